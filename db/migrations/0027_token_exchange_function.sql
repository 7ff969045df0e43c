-- Token exchange (RFC 8693) as PL/pgSQL functions (issue 16), the last grant still sent as text:
-- its statement was parsed and planned on every exchange (about 0.3 ms of its database time); a
-- function's plan is prepared once per backend. An exchange is still one statement.

-- The exchange's record, for a client this request has authenticated: token_issued naming the
-- subject token, and an agent client's success in its hourly counter. Written only while
--   - the client is confidential (an exchange needs one);
--   - the subject token is still good in the database (portcullis_access_token_live: not
--     revoked, its client enabled, its user active, issued after the user's last credential
--     event);
--   - when p_ring_epoch is given, the key set still has that epoch. It is the epoch of the idle
--     key ring the subject token's signature was checked with; once the epoch has moved, that
--     check does not stand.
-- Answers whether it recorded, and the epoch it compared, read in the same snapshot as the write.
-- The Worker calls it alone only on an exchange's rare second statement, after checking the
-- signature again: the client's DPoP proof and assertion are spent by then, so it is not
-- authenticated twice.
CREATE FUNCTION portcullis_record_token_exchange(
  p_client uuid,
  p_subject_jti text,
  p_subject_client_id text,
  p_subject_user_id uuid,
  p_subject_issued_at bigint,
  p_audience text,
  p_scope text,
  p_ring_epoch text,
  p_ip text,
  p_now timestamptz,
  p_hour_start timestamptz
) RETURNS TABLE (
  issued integer,
  key_epoch text
)
LANGUAGE plpgsql
VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH epoch AS (
    SELECT max(k.version) || '.' || count(*) AS key_epoch FROM signing_keys k
  ), audited AS (
    INSERT INTO audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
    SELECT 'token_issued', 'client:' || c.client_id, p_subject_user_id, c.tenant_id, c.client_id, p_ip,
      jsonb_build_object('grant_type', 'urn:ietf:params:oauth:grant-type:token-exchange',
        'subject_jti', p_subject_jti, 'subject', p_subject_user_id::text, 'audience', p_audience,
        'scope', p_scope)
    FROM oauth_clients c CROSS JOIN epoch e
    WHERE c.id = p_client AND c.token_endpoint_auth_method <> 'none'
      AND (p_ring_epoch IS NULL OR e.key_epoch = p_ring_epoch)
      AND portcullis_access_token_live(p_subject_jti, p_subject_client_id, p_subject_user_id, p_subject_issued_at)
    RETURNING audit_events.id
  ), usage AS (
    INSERT INTO oauth_client_usage_counters AS u (client_id, hour_start, grant_type, success, failure, last_used_at)
    SELECT c.id, p_hour_start, 'urn:ietf:params:oauth:grant-type:token-exchange', 1, 0, p_now
    FROM oauth_clients c
    WHERE c.id = p_client AND c.token_endpoint_auth_method = 'private_key_jwt' AND EXISTS (SELECT 1 FROM audited)
    ON CONFLICT (client_id, hour_start, grant_type)
    DO UPDATE SET success = u.success + 1, last_used_at = greatest(u.last_used_at, excluded.last_used_at)
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM audited)::int, e.key_epoch FROM epoch e;
END
$$;
--> statement-breakpoint

-- Token exchange: authenticates the confidential client registered for the grant
-- (portcullis_authenticate_client) and records the exchange (portcullis_record_token_exchange).
-- No row: the client did not authenticate; issued 0: the client is public, the subject token is
-- no longer valid, or the key set's epoch moved (key_epoch says which epoch it has now).
CREATE FUNCTION portcullis_token_exchange(
  p_client_id text,
  p_method text,
  p_secret_hash text,
  p_dpop_jti_hash text,
  p_dpop_expires_at timestamptz,
  p_assertion_jti_hash text,
  p_assertion_expires_at timestamptz,
  p_assertion_jwk jsonb,
  p_assertion_jwks_uri text,
  p_subject_jti text,
  p_subject_client_id text,
  p_subject_user_id uuid,
  p_subject_issued_at bigint,
  p_audience text,
  p_scope text,
  p_ring_epoch text,
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
  issued integer,
  key_epoch text
)
LANGUAGE plpgsql
VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  SELECT cl.id::text, cl.client_id, cl.tenant_id::text, cl.scope, array_to_string(cl.grant_types, ' '),
    cl.token_endpoint_auth_method, cl.id_token_signed_response_alg, r.issued, r.key_epoch
  FROM portcullis_authenticate_client(p_client_id, p_method, 'urn:ietf:params:oauth:grant-type:token-exchange',
      p_secret_hash, p_dpop_jti_hash, p_dpop_expires_at, p_assertion_jti_hash, p_assertion_expires_at,
      p_assertion_jwk, p_assertion_jwks_uri, p_now) cl
    CROSS JOIN LATERAL portcullis_record_token_exchange(cl.id, p_subject_jti, p_subject_client_id,
      p_subject_user_id, p_subject_issued_at, p_audience, p_scope, p_ring_epoch, p_ip, p_now, p_hour_start) r;
END
$$;
