-- The default tenant: every user and client belongs to it unless placed elsewhere.
INSERT INTO "tenants" ("id", "slug", "name", "plan") VALUES ('00000000-0000-4000-8000-000000000001', 'default', 'Default', 'enterprise') ON CONFLICT ("id") DO NOTHING;
