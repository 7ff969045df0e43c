-- Raw usage rows become optional detail (issue 16): USAGE_DETAIL_RETENTION_DAYS = 0 writes none.
--
-- portcullis_verify_api_key (migration 0019) gains p_record_detail. When it is false the verify
-- records its outcome in the hourly counter and last_used_at only, and writes no raw
-- api_key_usage row; the counter is fed from the verdict itself, not from the raw insert, so it
-- counts the same either way. Everything else is as 0019 explains it: the order, the locks, the
-- columns.
--
-- The argument has a default (true, what 0019 did), so a Worker still sending the 0019 argument
-- list during a deployment gets the old behaviour rather than an error. The old function goes
-- first: beside it, the new one would make every call with the old arguments ambiguous.
DROP FUNCTION portcullis_verify_api_key(text, timestamptz, timestamptz, jsonb, jsonb, text, integer,
  boolean, text, text, timestamptz, integer);
--> statement-breakpoint
CREATE FUNCTION portcullis_verify_api_key(
  p_key_hash text,
  p_now timestamptz,
  p_period_start timestamptz,
  p_tier_quotas jsonb,
  p_tenant_quotas jsonb,
  p_endpoint text,
  p_elapsed_ms integer,
  p_caller_ok boolean,
  p_service_key_hash text,
  p_proof_jti_hash text,
  p_proof_expires_at timestamptz,
  p_last_used_resolution_seconds integer,
  p_record_detail boolean DEFAULT true
) RETURNS TABLE (
  proof_ok boolean,
  caller_ok boolean,
  id uuid,
  owner_user_id uuid,
  tenant_id uuid,
  tier text,
  scopes text[],
  metadata jsonb,
  code text,
  quota_limit bigint,
  used_before bigint,
  used_after bigint,
  rate_limit integer,
  window_count_before integer,
  window_count_after integer,
  window_reset_at_ms double precision,
  tenant_quota_limit bigint,
  tenant_used_before bigint,
  tenant_used_after bigint,
  recorded bigint,
  hidden_key boolean
)
LANGUAGE plpgsql
VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH pj AS (
    INSERT INTO used_proof_jtis (jti_hash, expires_at)
    SELECT p_proof_jti_hash, p_proof_expires_at WHERE p_proof_jti_hash IS NOT NULL
    ON CONFLICT (jti_hash) DO NOTHING
    RETURNING 1 AS spent
  ), sk AS (
    SELECT s.tenant_id, s.skip_rate_limit FROM service_keys s
    WHERE s.key_hash = p_service_key_hash AND s.revoked_at IS NULL AND s.expires_at > p_now
      AND (s.tenant_id IS NULL OR (SELECT t.active FROM tenants t WHERE t.id = s.tenant_id) IS TRUE)
  ), gate AS (
    SELECT (p_proof_jti_hash IS NULL OR EXISTS (SELECT 1 FROM pj)) AS proof_ok,
      (p_caller_ok IS TRUE AND (p_service_key_hash IS NULL OR EXISTS (SELECT 1 FROM sk))) AS caller_ok
  ), k AS (
    SELECT a.id, a.owner_user_id, a.tenant_id, a.tier, a.scopes, a.metadata,
      CASE WHEN p_service_key_hash IS NOT NULL AND (SELECT sk.skip_rate_limit FROM sk) THEN NULL
        ELSE a.rate_limit END AS rate_limit,
      coalesce(a.rotated_from, a.id) AS account_id,
      CASE
        WHEN a.revoked_at IS NOT NULL THEN 'REVOKED'
        WHEN a.grace_until IS NOT NULL AND a.grace_until <= p_now THEN 'REVOKED'
        WHEN a.expires_at IS NOT NULL AND a.expires_at <= p_now THEN 'EXPIRED'
        WHEN (SELECT u.status FROM users u WHERE u.id = a.owner_user_id) IS DISTINCT FROM 'active'
          OR (SELECT t.active FROM tenants t WHERE t.id = a.tenant_id) IS NOT TRUE THEN 'DISABLED'
      END AS dead,
      (p_tier_quotas ->> a.tier)::bigint AS quota_limit,
      (SELECT coalesce(t.monthly_quota, (p_tenant_quotas ->> t.plan)::bigint)
        FROM tenants t WHERE t.id = a.tenant_id) AS tenant_quota_limit,
      date_trunc('month', p_now, 'UTC') AS tenant_period,
      to_timestamp(floor(extract(epoch FROM p_now) / a.rate_limit_window_seconds)
        * a.rate_limit_window_seconds) AS window_start,
      a.rate_limit_window_seconds
    FROM api_keys a, gate g
    WHERE a.key_hash = p_key_hash AND g.caller_ok AND g.proof_ok
      AND (p_service_key_hash IS NULL
        OR EXISTS (SELECT 1 FROM sk WHERE sk.tenant_id IS NULL OR sk.tenant_id = a.tenant_id))
  ), seen AS (
    SELECT coalesce((SELECT c.used FROM api_key_quota_counters c
        WHERE c.key_id = k.account_id AND c.period_start = p_period_start), 0) AS used,
      coalesce((SELECT w.count FROM api_key_rate_windows w
        WHERE w.key_id = k.account_id AND w.window_start = k.window_start), 0) AS window_count,
      coalesce((SELECT tc.used FROM tenant_quota_counters tc
        WHERE tc.tenant_id = k.tenant_id AND tc.period_start = k.tenant_period), 0) AS tenant_used
    FROM k
  ), rate AS (
    INSERT INTO api_key_rate_windows AS r (key_id, window_start, count)
    SELECT k.account_id, k.window_start, 1 FROM k, seen
    WHERE k.dead IS NULL AND k.rate_limit IS NOT NULL
      AND (k.quota_limit IS NULL OR seen.used < k.quota_limit)
      AND (k.tenant_quota_limit IS NULL OR seen.tenant_used < k.tenant_quota_limit)
    ON CONFLICT (key_id) DO UPDATE SET
      window_start = greatest(r.window_start, excluded.window_start),
      count = CASE WHEN r.window_start < excluded.window_start THEN 1 ELSE r.count + 1 END
    WHERE r.window_start < excluded.window_start OR r.count < (SELECT k.rate_limit FROM k)
    RETURNING r.window_start, r.count
  ), key_quota_lock AS (
    SELECT c.used FROM api_key_quota_counters c, k
    WHERE c.key_id = k.account_id AND c.period_start = p_period_start
      AND k.dead IS NULL AND k.quota_limit IS NOT NULL AND k.tenant_quota_limit IS NOT NULL
    FOR UPDATE OF c
  ), tenant_quota AS (
    INSERT INTO tenant_quota_counters AS tq (tenant_id, period_start, used)
    SELECT k.tenant_id, k.tenant_period, 1 FROM k
    WHERE k.dead IS NULL AND k.tenant_quota_limit > 0
      AND (k.rate_limit IS NULL OR EXISTS (SELECT 1 FROM rate))
      AND (k.quota_limit IS NULL OR coalesce((SELECT kl.used FROM key_quota_lock kl), 0) < k.quota_limit)
    ON CONFLICT (tenant_id, period_start) DO UPDATE SET used = tq.used + 1
    WHERE tq.used < (SELECT k.tenant_quota_limit FROM k)
    RETURNING tq.used
  ), quota AS (
    INSERT INTO api_key_quota_counters AS q (key_id, period_start, used)
    SELECT k.account_id, p_period_start, 1 FROM k
    WHERE k.dead IS NULL AND (k.quota_limit IS NULL OR k.quota_limit > 0)
      AND (k.rate_limit IS NULL OR EXISTS (SELECT 1 FROM rate))
      AND (k.tenant_quota_limit IS NULL OR EXISTS (SELECT 1 FROM tenant_quota))
    ON CONFLICT (key_id, period_start) DO UPDATE SET used = q.used + 1
    WHERE (SELECT k.quota_limit FROM k) IS NULL OR q.used < (SELECT k.quota_limit FROM k)
    RETURNING q.used
  ), verdict AS (
    SELECT k.id,
      CASE
        WHEN k.dead IS NOT NULL THEN k.dead
        WHEN EXISTS (SELECT 1 FROM quota) THEN 'VALID'
        WHEN k.rate_limit IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rate)
          AND NOT (k.quota_limit IS NOT NULL AND seen.used >= k.quota_limit)
          AND NOT (k.tenant_quota_limit IS NOT NULL AND seen.tenant_used >= k.tenant_quota_limit)
          THEN 'RATE_LIMITED'
        ELSE 'QUOTA_EXCEEDED'
      END AS code
    FROM k, seen
  ), usage AS (
    INSERT INTO api_key_usage (key_id, endpoint, created_at, success, code, response_time_ms)
    SELECT v.id, p_endpoint, p_now, v.code = 'VALID', v.code,
      p_elapsed_ms + (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::int
    FROM verdict v
    WHERE p_record_detail IS NOT FALSE
    RETURNING key_id
  ), counted AS (
    INSERT INTO api_key_usage_counters AS uc (key_id, hour_start, endpoint, success, failure)
    SELECT v.id, date_trunc('hour', p_now, 'UTC'), coalesce(p_endpoint, ''),
      (v.code = 'VALID')::int, (v.code <> 'VALID')::int
    FROM verdict v
    ON CONFLICT (key_id, hour_start, endpoint) DO UPDATE SET
      success = uc.success + excluded.success, failure = uc.failure + excluded.failure
    RETURNING uc.key_id
  ), touched AS (
    UPDATE api_keys SET last_used_at = p_now
    WHERE api_keys.id = (SELECT ct.key_id FROM counted ct) AND (SELECT v.code FROM verdict v) = 'VALID'
      AND (api_keys.last_used_at IS NULL
        OR api_keys.last_used_at <= p_now - make_interval(secs => p_last_used_resolution_seconds))
    RETURNING api_keys.id
  )
  SELECT g.proof_ok, g.caller_ok, k.id, k.owner_user_id, k.tenant_id, k.tier, k.scopes, k.metadata,
    v.code, k.quota_limit, seen.used, (SELECT q.used FROM quota q), k.rate_limit,
    seen.window_count, (SELECT r.count FROM rate r),
    floor(extract(epoch FROM coalesce((SELECT r.window_start FROM rate r), k.window_start)) * 1000
      + k.rate_limit_window_seconds * 1000)::float8,
    k.tenant_quota_limit, seen.tenant_used, (SELECT tq.used FROM tenant_quota tq),
    (SELECT count(*) FROM counted),
    (p_service_key_hash IS NOT NULL AND k.id IS NULL
      AND EXISTS (SELECT 1 FROM api_keys a2 WHERE a2.key_hash = p_key_hash))
  FROM gate g LEFT JOIN k ON true LEFT JOIN seen ON true LEFT JOIN verdict v ON true;
END
$$;
