CREATE TABLE "tenant_quota_counters" (
	"tenant_id" uuid NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"used" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "tenant_quota_counters_tenant_id_period_start_pk" PRIMARY KEY("tenant_id","period_start")
);
--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "monthly_quota" bigint;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "tokens_valid_after" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "tenant_quota_counters" ADD CONSTRAINT "tenant_quota_counters_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_events_tenant_created_idx" ON "audit_events" USING btree ("tenant_id","created_at","id");--> statement-breakpoint
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_monthly_quota_ck" CHECK ("tenants"."monthly_quota" is null or "tenants"."monthly_quota" >= 0);