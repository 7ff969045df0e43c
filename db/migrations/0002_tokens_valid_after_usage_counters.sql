CREATE TABLE "api_key_usage_counters" (
	"key_id" uuid NOT NULL,
	"hour_start" timestamp with time zone NOT NULL,
	"endpoint" text DEFAULT '' NOT NULL,
	"success" bigint DEFAULT 0 NOT NULL,
	"failure" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "api_key_usage_counters_key_id_hour_start_endpoint_pk" PRIMARY KEY("key_id","hour_start","endpoint")
);
--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "tokens_valid_after" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "api_key_usage_counters" ADD CONSTRAINT "api_key_usage_counters_key_id_api_keys_id_fk" FOREIGN KEY ("key_id") REFERENCES "public"."api_keys"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_key_usage_counters_hour_idx" ON "api_key_usage_counters" USING btree ("hour_start");