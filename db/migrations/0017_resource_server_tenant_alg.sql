ALTER TABLE "resource_servers" ADD COLUMN "tenant_id" uuid DEFAULT '00000000-0000-4000-8000-000000000001' NOT NULL;--> statement-breakpoint
ALTER TABLE "resource_servers" ADD COLUMN "signing_algorithm" text;--> statement-breakpoint
ALTER TABLE "resource_servers" ADD CONSTRAINT "resource_servers_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "resource_servers_tenant_idx" ON "resource_servers" USING btree ("tenant_id","created_at");--> statement-breakpoint
ALTER TABLE "resource_servers" ADD CONSTRAINT "resource_servers_alg_ck" CHECK ("resource_servers"."signing_algorithm" is null or "resource_servers"."signing_algorithm" in ('ES256', 'RS256', 'EdDSA'));