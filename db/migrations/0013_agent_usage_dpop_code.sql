CREATE TABLE "oauth_client_usage_counters" (
	"client_id" uuid NOT NULL,
	"hour_start" timestamp with time zone NOT NULL,
	"grant_type" text NOT NULL,
	"success" bigint DEFAULT 0 NOT NULL,
	"failure" bigint DEFAULT 0 NOT NULL,
	"last_used_at" timestamp with time zone NOT NULL,
	CONSTRAINT "oauth_client_usage_counters_client_id_hour_start_grant_type_pk" PRIMARY KEY("client_id","hour_start","grant_type")
);
--> statement-breakpoint
ALTER TABLE "authorization_codes" ADD COLUMN "dpop_jkt" text;--> statement-breakpoint
ALTER TABLE "oauth_client_usage_counters" ADD CONSTRAINT "oauth_client_usage_counters_client_id_oauth_clients_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."oauth_clients"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "oauth_client_usage_counters_hour_idx" ON "oauth_client_usage_counters" USING btree ("hour_start");