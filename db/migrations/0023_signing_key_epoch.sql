-- The signing-key set's epoch (issue 16): one counter that every change to signing_keys bumps,
-- in the same transaction as the change. An isolate caches the key ring with the epoch it was
-- read at (one statement, one snapshot). The token grants read the epoch in their own statement,
-- so when it is the ring's, the ring is still the database's key set as of that statement and
-- the isolate keeps using it without a second round trip, however long it sat idle; when it is
-- not, the isolate re-reads the ring before it signs. Readers only read the row; only rotations
-- (rare, and serialised on this row) write it.
CREATE TABLE "signing_key_epoch" (
	"id" integer PRIMARY KEY DEFAULT 1 NOT NULL,
	"epoch" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "signing_key_epoch_one_row_ck" CHECK ("signing_key_epoch"."id" = 1)
);
--> statement-breakpoint
INSERT INTO "signing_key_epoch" ("id", "epoch") VALUES (1, 1);
--> statement-breakpoint
-- Per row, so a statement that changes nothing (the scheduled retire finding no key) leaves the
-- epoch alone and no isolate re-reads its ring for it.
CREATE FUNCTION portcullis_bump_signing_key_epoch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  UPDATE signing_key_epoch SET epoch = epoch + 1 WHERE id = 1;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER signing_keys_bump_epoch
AFTER INSERT OR UPDATE OR DELETE ON signing_keys
FOR EACH ROW EXECUTE FUNCTION portcullis_bump_signing_key_epoch();
