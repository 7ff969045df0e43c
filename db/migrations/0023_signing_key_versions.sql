-- The signing-key set's epoch (issue 16). Every signing_keys row carries a version drawn from one
-- sequence when it is inserted and again whenever it is updated, so the largest version together
-- with the row count names the table's contents: any insert or update raises the largest version,
-- a delete lowers the count, and the pair can only come back to an earlier value when the rows are
-- exactly the rows they were then. Versions are row data, so a reader sees them only once the
-- change commits, and drawing one takes no lock any other writer waits for.
--
-- An isolate caches the key ring with the epoch it was read at (one statement, one snapshot). The
-- token grants read the epoch in their own statement: the same epoch means the ring is still the
-- database's key set as of that statement, and the isolate signs without reading it again however
-- long it sat idle; another epoch makes it re-read the ring before it signs.
CREATE SEQUENCE "public"."signing_key_versions" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;
--> statement-breakpoint
ALTER TABLE "signing_keys" ADD COLUMN "version" bigint DEFAULT nextval('signing_key_versions') NOT NULL;
--> statement-breakpoint
CREATE FUNCTION portcullis_signing_key_version() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  NEW.version := nextval('signing_key_versions');
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER signing_keys_version
BEFORE UPDATE ON signing_keys
FOR EACH ROW EXECUTE FUNCTION portcullis_signing_key_version();
