CREATE TABLE "pushed_authorization_requests" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"request_uri_hash" text NOT NULL,
	"client_id" uuid NOT NULL,
	"params" jsonb NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"consumed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pushed_authorization_requests_request_uri_hash_unique" UNIQUE("request_uri_hash")
);
--> statement-breakpoint
CREATE TABLE "resource_servers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"identifier" text NOT NULL,
	"display_name" text NOT NULL,
	"scopes" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"access_token_ttl_seconds" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "resource_servers_identifier_unique" UNIQUE("identifier"),
	CONSTRAINT "resource_servers_ttl_ck" CHECK ("resource_servers"."access_token_ttl_seconds" is null or "resource_servers"."access_token_ttl_seconds" between 60 and 86400)
);
--> statement-breakpoint
ALTER TABLE "pushed_authorization_requests" ADD CONSTRAINT "pushed_authorization_requests_client_id_oauth_clients_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."oauth_clients"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "pushed_authorization_requests_expires_at_idx" ON "pushed_authorization_requests" USING btree ("expires_at");