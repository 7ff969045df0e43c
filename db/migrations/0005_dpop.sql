CREATE TABLE "used_proof_jtis" (
	"jti_hash" text PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD COLUMN "dpop_jkt" text;--> statement-breakpoint
CREATE INDEX "used_proof_jtis_expires_at_idx" ON "used_proof_jtis" USING btree ("expires_at");