-- The device-code poll (RFC 8628 §3.4-3.5) as a PL/pgSQL function (issue 16), like the other
-- grants (0020, 0021): sent as text it was parsed and planned on every poll, about 0.9 ms of
-- its database time; a function's plan is prepared once per backend. Still one statement.
--
-- Authenticates the client (portcullis_authenticate_client) and locks its device code. It
-- records the poll. A pending code polled again before its interval has passed grows the
-- interval by 5 s (slow_down). An approved, unexpired code is consumed, and for an active user
-- the function:
--   - starts a refresh-token family when the client uses refresh tokens (a public client's is
--     bound to its DPoP key, RFC 9449 §5);
--   - writes token_issued;
--   - counts an agent client's success.
-- Concurrent polls serialise on the code row, so exactly one consumes it.
-- No row: the client did not authenticate. device_id null: no such code for this client.
CREATE FUNCTION portcullis_poll_device_code(
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
  p_device_code_hash text,
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
  device_id text,
  prev_status text,
  interval_seconds integer,
  user_id text,
  scope text,
  resource text,
  expired boolean,
  slow_down boolean,
  user_status text,
  email text,
  display_name text,
  email_verified boolean,
  tokens_valid_after double precision,
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
    SELECT * FROM portcullis_authenticate_client(p_client_id, p_method,
      'urn:ietf:params:oauth:grant-type:device_code', p_secret_hash, p_dpop_jti_hash, p_dpop_expires_at,
      p_assertion_jti_hash, p_assertion_expires_at, p_assertion_jwk, p_assertion_jwks_uri, p_now)
  ), prev AS (
    SELECT dc.id, dc.status, dc.interval_seconds, dc.last_polled_at, dc.expires_at
    FROM device_codes dc
    WHERE dc.device_code_hash = p_device_code_hash AND dc.client_id = (SELECT c.id FROM client c)
    FOR UPDATE
  ), polled AS (
    UPDATE device_codes d SET
      last_polled_at = p_now,
      status = CASE WHEN p.status = 'approved' AND p.expires_at > p_now THEN 'consumed' ELSE d.status END,
      interval_seconds = CASE
        WHEN p.status = 'pending' AND p.last_polled_at IS NOT NULL
          AND p.last_polled_at + make_interval(secs => p.interval_seconds) > p_now
        THEN d.interval_seconds + 5 ELSE d.interval_seconds END
    FROM prev p WHERE d.id = p.id
    RETURNING d.id, p.status AS prev_status, d.interval_seconds, d.user_id, d.scope, d.resource,
      p.expires_at <= p_now AS expired,
      (p.status = 'pending' AND p.last_polled_at IS NOT NULL
        AND p.last_polled_at + make_interval(secs => p.interval_seconds) > p_now) AS slow_down
  ), grantee AS (
    SELECT p.*, u.status AS user_status, u.email, u.display_name, u.email_verified_at, u.tokens_valid_after
    FROM polled p LEFT JOIN users u ON u.id = p.user_id
  ), ok AS (
    SELECT g.* FROM grantee g WHERE g.prev_status = 'approved' AND NOT g.expired AND g.user_status = 'active'
  ), issued AS (
    INSERT INTO refresh_tokens (id, token_hash, family_id, client_id, user_id, scope, resource, auth_time,
      expires_at, dpop_jkt)
    SELECT p_refresh_id, p_refresh_token_hash, g.id, cl.id, g.user_id, g.scope, g.resource, p_now,
      p_refresh_expires_at, CASE WHEN cl.token_endpoint_auth_method = 'none' THEN p_dpop_jkt END
    FROM ok g CROSS JOIN client cl
    WHERE 'refresh_token' = ANY (cl.grant_types)
    RETURNING refresh_tokens.id
  ), audited AS (
    INSERT INTO audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
    SELECT 'token_issued', 'client:' || cl.client_id, g.user_id, cl.tenant_id, cl.client_id, p_ip,
      jsonb_build_object('grant_type', 'urn:ietf:params:oauth:grant-type:device_code', 'grant_id', g.id)
    FROM ok g CROSS JOIN client cl
    RETURNING audit_events.id
  ), usage AS (
    INSERT INTO oauth_client_usage_counters AS u (client_id, hour_start, grant_type, success, failure, last_used_at)
    SELECT cl.id, p_hour_start, 'urn:ietf:params:oauth:grant-type:device_code', 1, 0, p_now FROM client cl
    WHERE cl.token_endpoint_auth_method = 'private_key_jwt' AND EXISTS (SELECT 1 FROM audited)
    ON CONFLICT (client_id, hour_start, grant_type)
    DO UPDATE SET success = u.success + 1, last_used_at = greatest(u.last_used_at, excluded.last_used_at)
    RETURNING 1
  )
  SELECT cl.id::text, cl.client_id, cl.tenant_id::text, cl.scope, array_to_string(cl.grant_types, ' '),
    cl.token_endpoint_auth_method, cl.id_token_signed_response_alg,
    g.id::text, g.prev_status, g.interval_seconds, g.user_id::text, g.scope, g.resource, g.expired,
    g.slow_down, g.user_status, g.email, g.display_name, g.email_verified_at IS NOT NULL,
    floor(extract(epoch FROM g.tokens_valid_after))::float8, (SELECT count(*) FROM issued)::int
  FROM client cl LEFT JOIN grantee g ON true;
END
$$;
