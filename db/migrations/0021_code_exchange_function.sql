-- The authorization_code grant (RFC 6749 §4.1.3) as a PL/pgSQL function (issue 16), like the
-- grants of 0020: its plan is prepared once per backend instead of on every exchange; the Worker
-- still sends one statement.
--
-- Authenticates the client (portcullis_authenticate_client), consumes its unexpired, unused code
-- (bound to p_dpop_jkt when the code is) and, when PKCE (p_code_challenge: the S256 of the presented verifier), the redirect URI (null:
-- none was sent) and the user's status all hold, starts a refresh-token family (if the client
-- uses refresh tokens; a public client's is bound to its DPoP key, RFC 9449 §5), writes
-- token_issued and counts an agent client's success. Concurrent calls serialise on the code
-- row: exactly one sees consumed_at null. No row: the client did not authenticate; code_id null:
-- the code was not consumed.
CREATE FUNCTION portcullis_exchange_authorization_code(
  p_client_id text,
  p_method text,
  p_secret_hash text,
  p_dpop_jkt text,
  p_dpop_jti_hash text,
  p_dpop_expires_at timestamptz,
  p_assertion_jti_hash text,
  p_assertion_expires_at timestamptz,
  p_assertion_jwk jsonb,
  p_assertion_jwks_uri text,
  p_code_hash text,
  p_code_challenge text,
  p_redirect_uri text,
  p_refresh_id uuid,
  p_refresh_token_hash text,
  p_refresh_expires_at timestamptz,
  p_ip text,
  p_now timestamptz,
  p_hour_start timestamptz
) RETURNS TABLE (
  cl_id text,
  cl_client_id text,
  cl_tenant_id text,
  cl_scope text,
  cl_grant_types text,
  cl_method text,
  cl_alg text,
  code_id text,
  user_id text,
  redirect_uri text,
  scope text,
  resource text,
  nonce text,
  code_challenge text,
  status text,
  email text,
  display_name text,
  email_verified boolean,
  tokens_valid_after double precision,
  auth_time integer,
  amr text[],
  refresh_issued integer
)
LANGUAGE plpgsql
VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH client AS (
    SELECT * FROM portcullis_authenticate_client(p_client_id, p_method, 'authorization_code', p_secret_hash,
      p_dpop_jti_hash, p_dpop_expires_at, p_assertion_jti_hash, p_assertion_expires_at, p_assertion_jwk,
      p_assertion_jwks_uri, p_now)
  ), consumed AS (
    UPDATE authorization_codes ac SET consumed_at = p_now
    WHERE ac.code_hash = p_code_hash AND ac.client_id = (SELECT c.id FROM client c)
      AND ac.consumed_at IS NULL AND ac.expires_at > p_now
      AND (ac.dpop_jkt IS NULL OR ac.dpop_jkt = p_dpop_jkt)
    RETURNING ac.id, ac.user_id, ac.redirect_uri, ac.scope, ac.resource, ac.nonce, ac.code_challenge,
      ac.auth_time, ac.amr
  ), grantee AS (
    SELECT c.*, u.status, u.email, u.display_name, u.email_verified_at, u.tokens_valid_after
    FROM consumed c JOIN users u ON u.id = c.user_id
  ), ok AS (
    SELECT g.* FROM grantee g
    WHERE g.status = 'active' AND g.code_challenge = p_code_challenge
      AND g.redirect_uri = coalesce(p_redirect_uri, g.redirect_uri)
  ), issued AS (
    INSERT INTO refresh_tokens (id, token_hash, family_id, authorization_code_id, client_id, user_id, scope,
      resource, auth_time, amr, expires_at, dpop_jkt)
    SELECT p_refresh_id, p_refresh_token_hash, g.id, g.id, cl.id, g.user_id, g.scope, g.resource, g.auth_time,
      g.amr, p_refresh_expires_at, CASE WHEN cl.token_endpoint_auth_method = 'none' THEN p_dpop_jkt END
    FROM ok g CROSS JOIN client cl
    WHERE 'refresh_token' = ANY (cl.grant_types)
    RETURNING refresh_tokens.id
  ), audited AS (
    INSERT INTO audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
    SELECT 'token_issued', 'client:' || cl.client_id, g.user_id, cl.tenant_id, cl.client_id, p_ip,
      jsonb_build_object('grant_type', 'authorization_code', 'grant_id', g.id)
    FROM ok g CROSS JOIN client cl
    RETURNING audit_events.id
  ), usage AS (
    INSERT INTO oauth_client_usage_counters AS u (client_id, hour_start, grant_type, success, failure, last_used_at)
    SELECT cl.id, p_hour_start, 'authorization_code', 1, 0, p_now FROM client cl
    WHERE cl.token_endpoint_auth_method = 'private_key_jwt' AND EXISTS (SELECT 1 FROM audited)
    ON CONFLICT (client_id, hour_start, grant_type)
    DO UPDATE SET success = u.success + 1, last_used_at = greatest(u.last_used_at, excluded.last_used_at)
    RETURNING 1
  )
  SELECT cl.id::text, cl.client_id, cl.tenant_id::text, cl.scope, array_to_string(cl.grant_types, ' '),
    cl.token_endpoint_auth_method, cl.id_token_signed_response_alg,
    g.id::text, g.user_id::text, g.redirect_uri, g.scope, g.resource, g.nonce, g.code_challenge, g.status,
    g.email, g.display_name, g.email_verified_at IS NOT NULL, floor(extract(epoch FROM g.tokens_valid_after))::float8,
    floor(extract(epoch FROM g.auth_time))::int, g.amr, (SELECT count(*) FROM issued)::int
  FROM client cl LEFT JOIN grantee g ON true;
END
$$;
