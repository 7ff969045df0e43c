-- The client_credentials and refresh_token grants as PL/pgSQL functions (issue 16), for the same
-- reason as verify (0019): sent as text, each grant statement was parsed and planned on every
-- call, most of its database time; a function's plan is prepared once per backend. The Worker
-- still sends one statement per grant, so each stays one round trip and all-or-nothing.

-- Authenticates the client a token request presented, for one grant, and answers its row (none
-- when it does not authenticate). In order:
--   1. a DPoP proof's jti (p_dpop_jti_hash) is spent; without a proof, a client registered with
--      dpop_bound_access_tokens does not authenticate;
--   2. the client must be enabled, in an active tenant, registered for this grant type and this
--      authentication method, and
--        'none'             a public client (no secret);
--        'private_key_jwt'  no secret, and it still registers the key that verified the assertion
--                           (p_assertion_jwk among its jwks, or the same p_assertion_jwks_uri);
--        otherwise          the SHA-256 of the presented secret equals the stored one (a hash of a
--                           256-bit secret: comparing it in SQL reveals nothing usable), unexpired;
--   3. a private_key_jwt assertion's jti (p_assertion_jti_hash) is spent by the client it
--      authenticates (RFC 7523 §3), and the client authenticates only if that spend won.
-- A spend that loses (a replay, concurrent ones included: they serialise on the primary key)
-- authenticates nothing. The one definition of client authentication at the token endpoint:
-- every grant statement reads its client from here, in the same statement as the grant's writes.
CREATE FUNCTION portcullis_authenticate_client(
  p_client_id text,
  p_method text,
  p_grant_type text,
  p_secret_hash text,
  p_dpop_jti_hash text,
  p_dpop_expires_at timestamptz,
  p_assertion_jti_hash text,
  p_assertion_expires_at timestamptz,
  p_assertion_jwk jsonb,
  p_assertion_jwks_uri text,
  p_now timestamptz
) RETURNS TABLE (
  id uuid,
  client_id text,
  tenant_id uuid,
  scope text,
  grant_types text[],
  token_endpoint_auth_method text,
  id_token_signed_response_alg text
)
LANGUAGE plpgsql
VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH dpop_jti AS (
    INSERT INTO used_proof_jtis (jti_hash, expires_at)
    SELECT p_dpop_jti_hash, p_dpop_expires_at WHERE p_dpop_jti_hash IS NOT NULL
    ON CONFLICT (jti_hash) DO NOTHING
    RETURNING 1
  ), asserted AS (
    SELECT c.id, c.client_id, c.tenant_id, c.scope, c.grant_types, c.token_endpoint_auth_method,
      c.id_token_signed_response_alg
    FROM oauth_clients c
    WHERE c.client_id = p_client_id AND c.disabled_at IS NULL
      AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = c.tenant_id AND t.active)
      AND c.token_endpoint_auth_method = p_method
      AND p_grant_type = ANY (c.grant_types)
      AND CASE
        WHEN p_method = 'none' THEN c.client_secret_hash IS NULL
        WHEN p_method = 'private_key_jwt' THEN c.client_secret_hash IS NULL AND CASE
          WHEN p_assertion_jwk IS NOT NULL THEN c.metadata->'jwks'->'keys' @> jsonb_build_array(p_assertion_jwk)
          WHEN p_assertion_jwks_uri IS NOT NULL THEN c.metadata->>'jwks_uri' = p_assertion_jwks_uri
          ELSE false
        END
        ELSE c.client_secret_hash = p_secret_hash
          AND (c.client_secret_expires_at IS NULL OR c.client_secret_expires_at > p_now)
      END
      AND CASE
        WHEN p_dpop_jti_hash IS NULL THEN NOT coalesce((c.metadata->>'dpop_bound_access_tokens')::boolean, false)
        ELSE EXISTS (SELECT 1 FROM dpop_jti)
      END
  ), assertion_jti AS (
    INSERT INTO used_proof_jtis (jti_hash, expires_at)
    SELECT p_assertion_jti_hash, p_assertion_expires_at FROM asserted WHERE p_assertion_jti_hash IS NOT NULL
    ON CONFLICT (jti_hash) DO NOTHING
    RETURNING 1
  )
  SELECT a.* FROM asserted a WHERE p_assertion_jti_hash IS NULL OR EXISTS (SELECT 1 FROM assertion_jti);
END
$$;
--> statement-breakpoint

-- client_credentials (RFC 6749 §4.4): authenticates the confidential client
-- (portcullis_authenticate_client) and, when the requested scope is within its registration and
-- names no user-facing scope, writes token_issued and counts an agent client's success. No row:
-- the client did not authenticate (a refused scope is the Worker's to explain).
CREATE FUNCTION portcullis_client_credentials(
  p_client_id text,
  p_method text,
  p_secret_hash text,
  p_dpop_jti_hash text,
  p_dpop_expires_at timestamptz,
  p_assertion_jti_hash text,
  p_assertion_expires_at timestamptz,
  p_assertion_jwk jsonb,
  p_assertion_jwks_uri text,
  p_requested_scope text,
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
  cl_alg text
)
LANGUAGE plpgsql
VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH client AS (
    SELECT * FROM portcullis_authenticate_client(p_client_id, p_method, 'client_credentials', p_secret_hash,
      p_dpop_jti_hash, p_dpop_expires_at, p_assertion_jti_hash, p_assertion_expires_at, p_assertion_jwk,
      p_assertion_jwks_uri, p_now)
  ), audited AS (
    INSERT INTO audit_events (type, actor, tenant_id, client_id, ip, metadata)
    SELECT 'token_issued', 'client:' || cl.client_id, cl.tenant_id, cl.client_id, p_ip,
      jsonb_build_object('grant_type', 'client_credentials')
    FROM client cl
    WHERE cl.token_endpoint_auth_method <> 'none'
      AND (p_requested_scope IS NULL OR (
        string_to_array(p_requested_scope, ' ') <@ string_to_array(cl.scope, ' ')
        AND NOT string_to_array(p_requested_scope, ' ') && ARRAY['openid', 'offline_access']))
    RETURNING audit_events.id
  ), usage AS (
    INSERT INTO oauth_client_usage_counters AS u (client_id, hour_start, grant_type, success, failure, last_used_at)
    SELECT cl.id, p_hour_start, 'client_credentials', 1, 0, p_now FROM client cl
    WHERE cl.token_endpoint_auth_method = 'private_key_jwt' AND EXISTS (SELECT 1 FROM audited)
    ON CONFLICT (client_id, hour_start, grant_type)
    DO UPDATE SET success = u.success + 1, last_used_at = greatest(u.last_used_at, excluded.last_used_at)
    RETURNING 1
  )
  SELECT cl.id::text, cl.client_id, cl.tenant_id::text, cl.scope, array_to_string(cl.grant_types, ' '),
    cl.token_endpoint_auth_method, cl.id_token_signed_response_alg
  FROM client cl;
END
$$;
--> statement-breakpoint

-- refresh_token (RFC 6749 §6) rotation: authenticates the client (portcullis_authenticate_client),
-- marks its live token (active user, scope not widened, DPoP key and requested audience matching)
-- replaced by p_next_id, inserts the successor in the same family, writes token_issued and counts an agent
-- client's success. Concurrent uses serialise on the row: exactly one finds replaced_by null.
-- No row: the client did not authenticate; previous_id null: the token did not rotate (the
-- Worker then asks why, on the failure path).
-- p_target_identifier: the audience a resource parameter named (one identifier, or several
-- joined by spaces, each among the grant's), null for none; p_target_fallback stands for the
-- audience of a grant that named no resource.
CREATE FUNCTION portcullis_rotate_refresh_token(
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
  p_token_hash text,
  p_requested_scope text,
  p_target_identifier text,
  p_target_fallback text,
  p_next_id uuid,
  p_next_token_hash text,
  p_next_expires_at timestamptz,
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
  previous_id text,
  family_id text,
  user_id text,
  scope text,
  resource text,
  status text,
  email text,
  display_name text,
  email_verified boolean,
  tokens_valid_after double precision,
  auth_time integer,
  amr text[]
)
LANGUAGE plpgsql
VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH client AS (
    SELECT * FROM portcullis_authenticate_client(p_client_id, p_method, 'refresh_token', p_secret_hash,
      p_dpop_jti_hash, p_dpop_expires_at, p_assertion_jti_hash, p_assertion_expires_at, p_assertion_jwk,
      p_assertion_jwks_uri, p_now)
  ), rotated AS (
    UPDATE refresh_tokens r SET replaced_by = p_next_id
    FROM users u
    WHERE r.token_hash = p_token_hash AND r.client_id = (SELECT c.id FROM client c)
      AND r.revoked_at IS NULL AND r.replaced_by IS NULL AND r.expires_at > p_now
      AND u.id = r.user_id AND u.status = 'active'
      AND string_to_array(p_requested_scope, ' ') <@ string_to_array(r.scope, ' ')
      AND (r.dpop_jkt IS NULL OR r.dpop_jkt = p_dpop_jkt)
      AND (p_target_identifier IS NULL
        OR string_to_array(coalesce(nullif(r.resource, ''), p_target_fallback), ' ')
          @> string_to_array(p_target_identifier, ' '))
    RETURNING r.id, r.family_id, r.authorization_code_id, r.client_id, r.user_id, r.scope, r.resource,
      r.auth_time, r.amr, r.dpop_jkt, u.status, u.email, u.display_name, u.email_verified_at, u.tokens_valid_after
  ), issued AS (
    INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, authorization_code_id, client_id, user_id,
      scope, resource, auth_time, amr, expires_at, dpop_jkt)
    SELECT p_next_id, p_next_token_hash, r.family_id, r.id, r.authorization_code_id, r.client_id,
      r.user_id, r.scope, r.resource, r.auth_time, r.amr, p_next_expires_at, r.dpop_jkt
    FROM rotated r
    RETURNING refresh_tokens.id
  ), audited AS (
    INSERT INTO audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
    SELECT 'token_issued', 'client:' || cl.client_id, r.user_id, cl.tenant_id, cl.client_id, p_ip,
      jsonb_build_object('grant_type', 'refresh_token', 'family_id', r.family_id)
    FROM rotated r CROSS JOIN client cl
    RETURNING audit_events.id
  ), usage AS (
    INSERT INTO oauth_client_usage_counters AS u (client_id, hour_start, grant_type, success, failure, last_used_at)
    SELECT cl.id, p_hour_start, 'refresh_token', 1, 0, p_now FROM client cl
    WHERE cl.token_endpoint_auth_method = 'private_key_jwt' AND EXISTS (SELECT 1 FROM audited)
    ON CONFLICT (client_id, hour_start, grant_type)
    DO UPDATE SET success = u.success + 1, last_used_at = greatest(u.last_used_at, excluded.last_used_at)
    RETURNING 1
  )
  SELECT cl.id::text, cl.client_id, cl.tenant_id::text, cl.scope, array_to_string(cl.grant_types, ' '),
    cl.token_endpoint_auth_method, cl.id_token_signed_response_alg,
    r.id::text, r.family_id::text, r.user_id::text, r.scope, r.resource, r.status, r.email, r.display_name,
    r.email_verified_at IS NOT NULL, floor(extract(epoch FROM r.tokens_valid_after))::float8,
    floor(extract(epoch FROM r.auth_time))::int, r.amr
  FROM client cl LEFT JOIN rotated r ON true;
END
$$;
