import type pg from 'pg'

/**
 * Delivered mail has its body cleared (email_outbox keeps no tokens), so the test database keeps
 * a copy of each message as it is queued: the test reads links the way a person reads mail.
 */
export async function keepMailCopies(db: pg.Client): Promise<void> {
  await db.query(`
    CREATE TABLE IF NOT EXISTS browser_test_mail (to_address text, template text, body_text text, created_at timestamptz DEFAULT now());
    CREATE OR REPLACE FUNCTION browser_test_copy_mail() RETURNS trigger AS $$
    BEGIN INSERT INTO browser_test_mail (to_address, template, body_text) VALUES (NEW.to_address, NEW.template, NEW.body_text); RETURN NEW; END
    $$ LANGUAGE plpgsql;
    DROP TRIGGER IF EXISTS browser_test_copy_mail ON email_outbox;
    CREATE TRIGGER browser_test_copy_mail AFTER INSERT ON email_outbox FOR EACH ROW EXECUTE FUNCTION browser_test_copy_mail();
  `)
}

/** The link in the newest message of `template` to `to`, polled until it arrives. */
export async function linkFromMail(db: pg.Client, to: string, template: string): Promise<string> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const { rows } = await db.query<{ body_text: string }>(
      'SELECT body_text FROM browser_test_mail WHERE to_address = $1 AND template = $2 ORDER BY created_at DESC LIMIT 1',
      [to, template],
    )
    const link = rows[0]?.body_text.match(/https?:\/\/\S+token=[A-Za-z0-9_-]+/)?.[0]
    if (link !== undefined) {
      return link
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`no ${template} mail to ${to} within 10 s`)
}
