-- The database half of an access-token check (issue 16), as a function whose query plans are
-- prepared once per backend. Hot statements fold it in as one predicate (the verify caller's
-- p_caller_ok, userinfo's user lookup, token exchange's subject), so it costs no round trip, and
-- they no longer parse and plan its three subqueries on every call.
--
-- True when the token's jti is not revoked, its client is enabled and its tenant active (and not
-- deactivated since the token's iat second), and, for a user's token (p_user_id not null), the
-- user is active and the token was issued after the user's last credential event (iat strictly
-- after the second of tokens_valid_after). STABLE: it reads in the calling statement's snapshot.
CREATE FUNCTION portcullis_access_token_live(
  p_jti text,
  p_client_id text,
  p_user_id uuid,
  p_issued_at bigint
) RETURNS boolean
LANGUAGE plpgsql
STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  RETURN NOT EXISTS (SELECT 1 FROM revoked_access_tokens r WHERE r.jti = p_jti)
    AND EXISTS (
      SELECT 1 FROM oauth_clients c JOIN tenants t ON t.id = c.tenant_id
      WHERE c.client_id = p_client_id AND c.disabled_at IS NULL AND t.active
        AND (t.tokens_valid_after IS NULL OR t.tokens_valid_after < to_timestamp(p_issued_at))
    )
    AND (p_user_id IS NULL OR EXISTS (
      SELECT 1 FROM users u
      WHERE u.id = p_user_id AND u.status = 'active'
        AND (u.tokens_valid_after IS NULL OR u.tokens_valid_after < to_timestamp(p_issued_at))
    ));
END
$$;
