ALTER TABLE "external_identities" ADD COLUMN "access_token_sealed" text;--> statement-breakpoint
ALTER TABLE "external_identities" ADD COLUMN "refresh_token_sealed" text;--> statement-breakpoint
ALTER TABLE "external_identities" ADD COLUMN "token_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "external_identities" ADD COLUMN "token_scope" text;--> statement-breakpoint
ALTER TABLE "external_identities" ADD COLUMN "broken_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "external_identities" ADD COLUMN "refresh_lease_until" timestamp with time zone;