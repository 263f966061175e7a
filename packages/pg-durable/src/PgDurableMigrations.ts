/**
 * The push-mode tables and SQL functions, as migrations of this package, applied by Effect's SQL
 * migrator in pgflows' schema under an advisory lock, with their own migrations table
 * (`<schema>.pg_durable_migrations`). `run` applies pgflows' own migrations first (the step queue
 * lives in its built-in queue tables).
 *
 * 1. `step_results`: one row per step call of a pg_durable instance, keyed by the instance id, the
 *    step's key in the graph and the iteration (`call_id` = `<instance>:<key>:<iteration>`), with
 *    the input, the status, the output or the error, and when the graph read it.
 * 2. `push_functions`:
 *    - `pgd_enqueue_step(queue, channel, instance_id, step_key, step, input) → call_id`: returns the
 *      call of that step that the graph has not read yet (so a re-run of the node, which pg_durable
 *      may do after a crash, enqueues nothing twice), or records a new one (next iteration), puts
 *      `{call, step}` on the queue and notifies `channel` with `step:<queue>`;
 *    - `pgd_step_result(call_id, wait_seconds) → text`: waits (polling, backing off to one second)
 *      until the `StepWorker` wrote the result, marks it read and returns the output's JSON text;
 *      RAISES when the step failed (so the pg_durable node fails) or after `wait_seconds`;
 *    - `pgd_http_output(response, step) → text`: the body of a `df.http` response as JSON text;
 *      RAISES on a non-2xx answer or a body that is not JSON (graphs compiled before migration 3).
 * 3. `http_calls`, the HTTP binding's calls (`StepBinding.http`):
 *    - `pgd_http_call(instance_id, step_key, step) → result_key`: the key (`<step key>:<iteration>`)
 *      of the call of that step the graph has not read yet, or a new one (next iteration);
 *    - `pgd_http_output(response, step, instance_id, result_key) → text`: the body of a 2xx
 *      `df.http` response as JSON text, and the call marked read; RAISES on any other answer with
 *      the `message` of the JSON error the endpoint sent (the body in DETAIL), or on a body that is
 *      not JSON.
 *
 * `pgd_enqueue_step`, `pgd_step_result`, `pgd_http_call` and the 4-argument `pgd_http_output` are
 * `SECURITY DEFINER` (they write pgflows' tables) and not executable by PUBLIC: grant them to the
 * roles that start pg_durable instances with `grant`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as Identifier from "pgflows/Identifier"
import * as PgflowsConfig from "pgflows/PgflowsConfig"
import * as PgMigrations from "pgflows/PgMigrations"

/**
 * The migrations of a schema, in order.
 *
 * @category models
 * @since 0.1.0
 */
export const migrations = (
  schema: Identifier.Identifier
): ReadonlyArray<readonly [id: number, name: string, statements: ReadonlyArray<string>]> => {
  const s = Identifier.quote(schema)
  return [
    [1, "step_results", [
      `CREATE TABLE ${s}.step_results (
  call_id text PRIMARY KEY,
  instance_id text NOT NULL,
  step_key text NOT NULL,
  iteration integer NOT NULL,
  step text NOT NULL,
  queue text NOT NULL,
  input jsonb NOT NULL,
  status text NOT NULL DEFAULT 'pending' CONSTRAINT step_results_status CHECK (
    status IN ('pending', 'running', 'completed', 'failed')),
  output jsonb,
  error jsonb,
  attempts integer NOT NULL DEFAULT 0,
  msg_id bigint,
  consumed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  CONSTRAINT step_results_execution UNIQUE (instance_id, step_key, iteration)
)`,
      `-- The enqueue function looks for the unread call of a step of an instance.
CREATE INDEX step_results_unread ON ${s}.step_results (instance_id, step_key) WHERE consumed_at IS NULL`,
      `CREATE INDEX step_results_created ON ${s}.step_results (created_at)`
    ]],
    [2, "push_functions", [
      `CREATE FUNCTION ${s}.pgd_enqueue_step(
  p_queue text, p_channel text, p_instance_id text, p_step_key text, p_step text, p_input jsonb
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_call text;
  v_iteration integer;
  v_msg bigint;
BEGIN
  IF p_queue IS NULL OR p_instance_id IS NULL OR p_instance_id = '' OR p_step_key IS NULL OR p_step IS NULL THEN
    RAISE EXCEPTION 'pgflows.pgd_enqueue_step: the queue, instance id, step key and step are required';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('pgflows.pgd_step:' || p_instance_id || ':' || p_step_key));
  SELECT call_id INTO v_call FROM ${s}.step_results
  WHERE instance_id = p_instance_id AND step_key = p_step_key AND consumed_at IS NULL
  ORDER BY iteration DESC LIMIT 1;
  IF v_call IS NOT NULL THEN
    RETURN v_call;
  END IF;
  SELECT coalesce(max(iteration), 0) + 1 INTO v_iteration FROM ${s}.step_results
  WHERE instance_id = p_instance_id AND step_key = p_step_key;
  v_call := p_instance_id || ':' || p_step_key || ':' || v_iteration;
  INSERT INTO ${s}.queues (name) VALUES (p_queue) ON CONFLICT DO NOTHING;
  INSERT INTO ${s}.queue_messages (queue, vt, message)
  VALUES (p_queue, now(), jsonb_build_object('call', v_call, 'step', p_step))
  RETURNING msg_id INTO v_msg;
  INSERT INTO ${s}.step_results (call_id, instance_id, step_key, iteration, step, queue, input, msg_id)
  VALUES (v_call, p_instance_id, p_step_key, v_iteration, p_step, p_queue, coalesce(p_input, 'null'::jsonb), v_msg);
  IF p_channel IS NOT NULL THEN
    PERFORM pg_notify(p_channel, 'step:' || p_queue);
  END IF;
  RETURN v_call;
END
$fn$`,
      `CREATE FUNCTION ${s}.pgd_step_result(p_call text, p_wait_seconds integer DEFAULT 3600) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_row record;
  v_deadline timestamptz := clock_timestamp() + make_interval(secs => greatest(coalesce(p_wait_seconds, 0), 0));
  v_pause double precision := 0.01;
BEGIN
  IF p_call IS NULL THEN
    RAISE EXCEPTION 'pgflows.pgd_step_result: the call id is NULL';
  END IF;
  LOOP
    SELECT step, status, output, error INTO v_row FROM ${s}.step_results WHERE call_id = p_call;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'pgflows: unknown step call %', p_call;
    END IF;
    IF v_row.status = 'completed' THEN
      UPDATE ${s}.step_results SET consumed_at = coalesce(consumed_at, now()) WHERE call_id = p_call;
      RETURN coalesce(v_row.output, 'null'::jsonb)::text;
    END IF;
    IF v_row.status = 'failed' THEN
      RAISE EXCEPTION 'pgflows: step "%" failed: %', v_row.step, coalesce(v_row.error->>'message', v_row.error::text)
        USING DETAIL = coalesce(v_row.error::text, ''), HINT = 'step call ' || p_call;
    END IF;
    IF clock_timestamp() >= v_deadline THEN
      RAISE EXCEPTION 'pgflows: step "%" (call %) has no result after % seconds; is a StepWorker running for its queue?',
        v_row.step, p_call, p_wait_seconds;
    END IF;
    PERFORM pg_sleep(v_pause);
    v_pause := least(v_pause * 2, 1.0);
  END LOOP;
END
$fn$`,
      `CREATE FUNCTION ${s}.pgd_http_output(p_response jsonb, p_step text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_body text;
BEGIN
  IF p_response IS NULL OR jsonb_typeof(p_response) <> 'object' THEN
    RAISE EXCEPTION 'pgflows: step "%": the HTTP response is not an object', p_step;
  END IF;
  IF (p_response->>'ok') IS DISTINCT FROM 'true' THEN
    RAISE EXCEPTION 'pgflows: step "%" answered HTTP %: %', p_step, p_response->>'status',
      left(coalesce(p_response->>'body', ''), 500);
  END IF;
  v_body := p_response->>'body';
  IF p_response->>'encoding' = 'base64' THEN
    v_body := convert_from(decode(v_body, 'base64'), 'UTF8');
  END IF;
  BEGIN
    RETURN (v_body::jsonb)::text;
  EXCEPTION WHEN invalid_text_representation THEN
    RAISE EXCEPTION 'pgflows: step "%" answered a body that is not JSON: %', p_step, left(v_body, 200);
  END;
END
$fn$`,
      `REVOKE ALL ON FUNCTION ${s}.pgd_enqueue_step(text, text, text, text, text, jsonb) FROM PUBLIC`,
      `REVOKE ALL ON FUNCTION ${s}.pgd_step_result(text, integer) FROM PUBLIC`
    ]],
    [3, "http_calls", [
      `CREATE TABLE ${s}.http_calls (
  instance_id text NOT NULL,
  result_key text NOT NULL,
  step_key text NOT NULL,
  iteration integer NOT NULL,
  step text NOT NULL,
  consumed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance_id, result_key),
  CONSTRAINT http_calls_execution UNIQUE (instance_id, step_key, iteration)
)`,
      `-- pgd_http_call looks for the unread call of a step of an instance.
CREATE INDEX http_calls_unread ON ${s}.http_calls (instance_id, step_key) WHERE consumed_at IS NULL`,
      `CREATE INDEX http_calls_created ON ${s}.http_calls (created_at)`,
      `CREATE FUNCTION ${s}.pgd_http_call(p_instance_id text, p_step_key text, p_step text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_key text;
  v_iteration integer;
BEGIN
  IF p_instance_id IS NULL OR p_instance_id = '' OR p_step_key IS NULL OR p_step_key = '' OR p_step IS NULL THEN
    RAISE EXCEPTION 'pgflows.pgd_http_call: the instance id, step key and step are required';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('pgflows.pgd_http:' || p_instance_id || ':' || p_step_key));
  SELECT result_key INTO v_key FROM ${s}.http_calls
  WHERE instance_id = p_instance_id AND step_key = p_step_key AND consumed_at IS NULL
  ORDER BY iteration DESC LIMIT 1;
  IF v_key IS NOT NULL THEN
    RETURN v_key;
  END IF;
  SELECT coalesce(max(iteration), 0) + 1 INTO v_iteration FROM ${s}.http_calls
  WHERE instance_id = p_instance_id AND step_key = p_step_key;
  v_key := p_step_key || ':' || v_iteration;
  INSERT INTO ${s}.http_calls (instance_id, result_key, step_key, iteration, step)
  VALUES (p_instance_id, v_key, p_step_key, v_iteration, p_step);
  RETURN v_key;
END
$fn$`,
      `CREATE FUNCTION ${s}.pgd_http_output(p_response jsonb, p_step text, p_instance_id text, p_result_key text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  v_body text;
  v_error jsonb;
  v_output text;
BEGIN
  IF p_response IS NULL OR jsonb_typeof(p_response) <> 'object' THEN
    RAISE EXCEPTION 'pgflows: step "%": the HTTP response is not an object', p_step;
  END IF;
  v_body := p_response->>'body';
  IF p_response->>'encoding' = 'base64' THEN
    v_body := convert_from(decode(v_body, 'base64'), 'UTF8');
  END IF;
  IF (p_response->>'ok') IS DISTINCT FROM 'true' THEN
    -- The endpoint's typed error, when the body is one; else the start of the body.
    IF pg_input_is_valid(coalesce(v_body, ''), 'jsonb') AND jsonb_typeof(v_body::jsonb) = 'object' THEN
      v_error := v_body::jsonb;
    END IF;
    RAISE EXCEPTION 'pgflows: step "%" failed (HTTP %): %', p_step, p_response->>'status',
      coalesce(v_error->>'message', left(coalesce(v_body, ''), 500))
      USING DETAIL = left(coalesce(v_body, ''), 4000), HINT = 'step call ' || p_instance_id || ' ' || p_result_key;
  END IF;
  IF NOT pg_input_is_valid(coalesce(v_body, ''), 'jsonb') THEN
    RAISE EXCEPTION 'pgflows: step "%" answered a body that is not JSON: %', p_step, left(v_body, 200);
  END IF;
  v_output := (v_body::jsonb)::text;
  UPDATE ${s}.http_calls SET consumed_at = coalesce(consumed_at, now())
  WHERE instance_id = p_instance_id AND result_key = p_result_key;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'pgflows: step "%": unknown call % of instance %', p_step, p_result_key, p_instance_id;
  END IF;
  RETURN v_output;
END
$fn$`,
      `REVOKE ALL ON FUNCTION ${s}.pgd_http_call(text, text, text) FROM PUBLIC`,
      `REVOKE ALL ON FUNCTION ${s}.pgd_http_output(jsonb, text, text, text) FROM PUBLIC`
    ]]
  ]
}

/**
 * The table of this package's applied migrations, in the configured schema.
 *
 * @category models
 * @since 0.1.0
 */
export const table = (schema: Identifier.Identifier): string => `${schema}.pg_durable_migrations`

/**
 * The push-mode migrations, as a set `PgMigrations` applies after pgflows' own.
 *
 * @category models
 * @since 0.1.0
 */
export const set: PgMigrations.MigrationSet = { name: "pg_durable", table, migrations }

/**
 * Applies pgflows' migrations, then the pending push-mode migrations, under an advisory lock.
 * Returns the push-mode migrations it applied.
 *
 * @category running
 * @since 0.1.0
 */
export const run: Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  Migrator.MigrationError | SqlError,
  SqlClient.SqlClient
> = PgMigrations.apply(set)

/**
 * What a layer does at startup, as `PgflowsConfig.migrations` says (`auto`, `verify`, `off`).
 *
 * @category running
 * @since 0.1.0
 */
export const prepare = PgMigrations.prepareSet(set)

/**
 * Runs the migrations when built, and provides nothing.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<
  never,
  Migrator.MigrationError | SqlError | PgflowsConfig.PgflowsConfigError,
  SqlClient.SqlClient
> = Layer.effectDiscard(run).pipe(Layer.provide(PgflowsConfig.layerDefault))

/**
 * Lets a role call the push-mode functions (the role pg_durable runs SQL nodes as: the one that
 * called `df.start`).
 *
 * @category running
 * @since 0.1.0
 */
export const grant = (role: string): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { schema } = yield* PgflowsConfig.PgflowsConfig
    const s = Identifier.quote(schema)
    const quoted = `"${role.replaceAll("\"", "\"\"")}"`
    yield* sql.unsafe(`GRANT USAGE ON SCHEMA ${s} TO ${quoted}`)
    yield* sql.unsafe(
      `GRANT EXECUTE ON FUNCTION ${s}.pgd_enqueue_step(text, text, text, text, text, jsonb), ` +
        `${s}.pgd_step_result(text, integer), ${s}.pgd_http_output(jsonb, text), ${s}.pgd_http_call(text, text, text), ` +
        `${s}.pgd_http_output(jsonb, text, text, text) TO ${quoted}`
    )
  })
