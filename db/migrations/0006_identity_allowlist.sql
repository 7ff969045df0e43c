CREATE TABLE "identity_allowlist" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"kind" text NOT NULL,
	"value" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "identity_allowlist_kind_ck" CHECK ("identity_allowlist"."kind" in ('github_id', 'github_login', 'github_org', 'email', 'email_domain'))
);
--> statement-breakpoint
CREATE UNIQUE INDEX "identity_allowlist_kind_value_uq" ON "identity_allowlist" USING btree ("kind","value");