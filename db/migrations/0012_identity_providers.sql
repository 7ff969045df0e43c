CREATE TABLE "identity_providers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"tenant_id" uuid,
	"slug" text NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"issuer" text,
	"web_url" text,
	"api_url" text,
	"client_id" text NOT NULL,
	"client_secret_sealed" text NOT NULL,
	"scope" text,
	"enabled" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "identity_providers_slug_unique" UNIQUE("slug"),
	CONSTRAINT "identity_providers_kind_ck" CHECK ("identity_providers"."kind" in ('oidc', 'github')),
	CONSTRAINT "identity_providers_urls_ck" CHECK (("identity_providers"."kind" = 'oidc' and "identity_providers"."issuer" is not null) or ("identity_providers"."kind" = 'github' and "identity_providers"."web_url" is not null and "identity_providers"."api_url" is not null))
);
--> statement-breakpoint
ALTER TABLE "identity_providers" ADD CONSTRAINT "identity_providers_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "identity_providers_tenant_idx" ON "identity_providers" USING btree ("tenant_id");