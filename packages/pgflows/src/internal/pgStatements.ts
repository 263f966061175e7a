/**
 * The SQL of `PgStore`, one statement per store operation, built once per schema. Every identifier
 * is the validated schema name (see `Identifier`); every value is a bound parameter. Values larger
 * than the client can read are never read as such: each statement that returns a stored value
 * returns it as text only when it fits `$limit` bytes, and its size otherwise (docs/ARCHITECTURE.md,
 * "Runs are isolated").
 */
import * as Identifier from "../Identifier.ts"
import { newestServed, workflowKey } from "./pgVersions.ts"

export type Statements = ReturnType<typeof make>

/**
 * The end of executions, as CTEs over the transition arrays starting at parameter `$first`, after a
 * `locked` CTE that locked the runs: update the runs (a suspend whose run was woken meanwhile becomes
 * a release), delete, archive or reschedule their messages, wake the parents of runs that ended,
 * notify. `checkpoints` names the CTE of the batch's checkpoints, if any (to exclude nothing else).
 */
const transitionCtes = (schema: Identifier.Identifier, first: number) => {
  const s = Identifier.quote(schema)
  const ms = "* interval '1 millisecond'"
  const p = (n: number) => `$${first + n}`
  return `tr AS (
  SELECT t.*, CASE WHEN t.kind = 'suspend' AND l.events <> t.observed THEN 'release' ELSE t.kind END AS effective
  FROM unnest(${p(0)}::text[], ${p(1)}::text[], ${p(2)}::text[], ${p(3)}::text[], ${p(4)}::text[], ${p(5)}::float8[],
    ${p(6)}::bigint[], ${p(7)}::int[])
    AS t(run_id, token, kind, output, error, wake_ms, msg_id, observed)
  JOIN locked l ON l.id = t.run_id AND l.lease_owner = t.token
), moved AS (
  UPDATE ${s}.runs r SET
    status = CASE tr.effective WHEN 'complete' THEN 'completed' WHEN 'fail' THEN 'failed'
      WHEN 'suspend' THEN 'suspended' ELSE 'pending' END,
    output = CASE WHEN tr.effective = 'complete' THEN tr.output::jsonb ELSE r.output END,
    error = CASE WHEN tr.effective = 'fail' THEN tr.error::jsonb ELSE r.error END,
    wake_at = CASE WHEN tr.effective = 'suspend' AND tr.wake_ms IS NOT NULL THEN now() + tr.wake_ms ${ms} END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    completed_at = CASE WHEN tr.effective IN ('complete', 'fail') THEN now() END,
    updated_at = now()
  FROM tr
  WHERE r.id = tr.run_id
  RETURNING r.id, r.parent_id, r.wake_at, tr.effective AS kind, tr.msg_id, r.workflow, r.version, r.created_at
), failures AS (
  -- The failed runs' own table (docs/ARCHITECTURE.md, "Reads"): written only for a failure.
  INSERT INTO ${s}.failed_runs (run_id, workflow, version, created_at)
  SELECT id, workflow, version, created_at FROM moved WHERE kind = 'fail'
  ON CONFLICT (run_id) DO UPDATE SET failed_at = now()
), removed AS (
  DELETE FROM ${s}.queue_messages q USING moved m
  WHERE q.msg_id = m.msg_id AND m.kind IN ('complete', 'fail')
  RETURNING q.msg_id, q.queue, q.read_ct, q.enqueued_at, q.vt, q.message, m.kind
), archived AS (
  INSERT INTO ${s}.queue_archive (msg_id, queue, read_ct, enqueued_at, vt, message)
  SELECT msg_id, queue, read_ct, enqueued_at, vt, message FROM removed WHERE kind = 'fail'
), rescheduled AS (
  UPDATE ${s}.queue_messages q
  SET vt = CASE WHEN m.kind = 'release' THEN now() ELSE coalesce(m.wake_at, 'infinity'::timestamptz) END
  FROM moved m WHERE q.msg_id = m.msg_id AND m.kind IN ('suspend', 'release')
), woken AS (
  -- A parent waits for its children: wake it (parents ending in this same batch need no wake-up).
  UPDATE ${s}.runs p SET
    events = p.events + 1,
    wake_at = CASE WHEN p.status = 'suspended' THEN now() ELSE p.wake_at END,
    updated_at = now()
  FROM (SELECT DISTINCT parent_id FROM moved WHERE kind IN ('complete', 'fail') AND parent_id IS NOT NULL) c
  WHERE p.id = c.parent_id AND p.id NOT IN (SELECT run_id FROM tr)
    AND p.status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING p.status, p.msg_id
), woken_messages AS (
  UPDATE ${s}.queue_messages q SET vt = now() FROM woken w WHERE q.msg_id = w.msg_id AND w.status = 'suspended'
), notified AS (
  SELECT pg_notify(${p(8)}, CASE WHEN kind = 'release' THEN 'run' ELSE 'done:' || id END) AS n
  FROM moved WHERE kind IN ('complete', 'fail', 'release')
  UNION ALL SELECT pg_notify(${p(8)}, 'run') FROM (SELECT 1 FROM woken WHERE status = 'suspended' LIMIT 1) w
)`
}

/**
 * The journal writes of a batch, as CTEs after a `locked` CTE, over the arrays `$1` to `$10`. With
 * `transactional`, the entries are marked as written by a transaction step (`checkpointWith`); the
 * group-commit statements leave the column to its default, so they stay as they were.
 */
const checkpointCtes = (schema: Identifier.Identifier, transactional = false) => {
  const s = Identifier.quote(schema)
  const column = transactional ? ", transactional" : ""
  const value = transactional ? ", true" : ""
  const update = transactional ? ", transactional = EXCLUDED.transactional" : ""
  const ms = "* interval '1 millisecond'"
  return `accepted AS MATERIALIZED (
  SELECT t.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::int[], $10::float8[])
    AS t(run_id, token, key, name, input_hash, status, output, error, attempts, wake_ms)
  JOIN locked l ON l.id = t.run_id AND l.lease_owner = t.token
), written AS (
  INSERT INTO ${s}.steps AS st
    (run_id, key, name, input_hash, status, output, error, attempts, wake_at, completed_at${column})
  SELECT run_id, key, name, input_hash, status, output::jsonb, error::jsonb, attempts,
         CASE WHEN wake_ms IS NOT NULL THEN now() + wake_ms ${ms} END,
         CASE WHEN status IN ('completed', 'failed') THEN now() END${value}
  FROM accepted
  ON CONFLICT (run_id, key) DO UPDATE SET
    status = EXCLUDED.status, output = EXCLUDED.output, error = EXCLUDED.error, attempts = EXCLUDED.attempts,
    wake_at = EXCLUDED.wake_at, completed_at = EXCLUDED.completed_at${update}
  WHERE st.status NOT IN ('completed', 'failed')
)`
}

export const make = (schema: Identifier.Identifier) => {
  const s = Identifier.quote(schema)
  const ms = "* interval '1 millisecond'"
  const lock = (ids: string) =>
    `locked AS MATERIALIZED (
  SELECT id, lease_owner, events FROM ${s}.runs WHERE id IN (${ids}) ORDER BY id FOR NO KEY UPDATE
)`
  // A checkpoint that finds its key already final (a retried commit) is accepted as written.
  // Data-modifying CTEs always run; the notify CTE is a SELECT, so it runs only when referenced.
  const transitionsResult = `SELECT 'tr' AS kind, id AS run_id, NULL AS key FROM moved
UNION ALL SELECT 'n', NULL, NULL FROM (SELECT count(*) AS c FROM notified) AS forced WHERE forced.c < 0`
  return {
    createRuns: `
WITH input AS (
  SELECT t.id, t.workflow, t.input::jsonb AS input, t.delay_ms, t.parent_id, t.owner, t.lease_ms, t.ord,
         t.trace::jsonb AS trace,
         least(to_timestamp(t.deadline_ms / 1000.0), now() + t.timeout_ms ${ms}) AS deadline_at,
         -- Without a version (runs from SQL, schedulers): the newest a live worker serves.
         CASE WHEN t.version IS NOT NULL THEN t.version ELSE ${newestServed(s, "$8", "t.workflow")} END AS version,
         nextval('${schema}.queue_msg_id_seq') AS msg_id
  FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::float8[],
    $10::float8[], $11::float8[], $12::text[], $13::int[])
    WITH ORDINALITY AS t(id, workflow, input, delay_ms, parent_id, owner, lease_ms, deadline_ms, timeout_ms, trace,
      version, ord)
), inserted AS (
  INSERT INTO ${s}.runs AS r
    (id, workflow, version, status, input, wake_at, parent_id, msg_id, lease_owner, lease_expires_at, executions,
     started_at, deadline_at, trace)
  SELECT id, workflow, version,
         CASE WHEN owner IS NULL THEN 'pending' ELSE 'running' END,
         input,
         CASE WHEN delay_ms > 0 THEN now() + delay_ms ${ms} END,
         parent_id, msg_id, owner,
         CASE WHEN owner IS NOT NULL THEN now() + lease_ms ${ms} END,
         CASE WHEN owner IS NOT NULL THEN 1 ELSE 0 END,
         CASE WHEN owner IS NOT NULL THEN now() END,
         deadline_at, trace
  FROM input
  ON CONFLICT (id) DO NOTHING
  RETURNING r.id, r.workflow, r.version, r.status, r.executions, r.recoveries, r.events, r.deadline_at, r.trace,
    r.lease_owner, r.lease_expires_at, r.wake_at, r.parent_id, r.msg_id, r.created_at, r.updated_at, r.started_at
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $8, coalesce(lease_expires_at, wake_at, now()),
    jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM inserted
  RETURNING msg_id
), notified AS (
  SELECT pg_notify($9, 'run') AS n
  FROM (SELECT 1 FROM inserted WHERE lease_expires_at IS NULL AND wake_at IS NULL LIMIT 1) AS runnable
)
SELECT i.id, ins.id IS NOT NULL AS created, coalesce(ins.workflow, existing.workflow) AS workflow, ins.version,
  ins.status, ins.executions, ins.recoveries, ins.events, ins.deadline_at, ins.trace, ins.lease_owner, ins.lease_expires_at,
  ins.wake_at, ins.parent_id, ins.msg_id, ins.created_at, ins.updated_at, ins.started_at,
  extract(epoch FROM now()) * 1000 AS now_ms
FROM input i
LEFT JOIN inserted ins ON ins.id = i.id
LEFT JOIN ${s}.runs existing ON existing.id = i.id
CROSS JOIN (SELECT count(*) FROM notified) AS forced
ORDER BY i.ord`,
    // Only messages of the workflow versions this worker registers are read (by their key, see
    // `internal/versions.ts`); a run's input is returned as text only when it fits $6 bytes (its size
    // otherwise).
    claim: `
WITH due AS (
  SELECT msg_id FROM ${s}.queue_messages
  WHERE queue = $1 AND vt <= now() AND message->>'workflow' = ANY($5::text[])
  ORDER BY vt, msg_id
  LIMIT $2
  FOR UPDATE SKIP LOCKED
), msgs AS (
  UPDATE ${s}.queue_messages m SET vt = now() + $3 ${ms}, read_ct = m.read_ct + 1
  FROM due WHERE m.msg_id = due.msg_id
  RETURNING m.msg_id, m.read_ct, m.message->>'run' AS run_id, m.message->>'workflow' AS message_workflow
), claimed AS (
  UPDATE ${s}.runs r SET
    status = 'running',
    lease_owner = $4 || ':' || m.msg_id || ':' || m.read_ct,
    lease_expires_at = now() + $3 ${ms},
    executions = r.executions + 1,
    recoveries = r.recoveries + CASE WHEN r.status = 'running' THEN 1 ELSE 0 END,
    started_at = coalesce(r.started_at, now()),
    wake_at = NULL,
    msg_id = m.msg_id,
    updated_at = now()
  FROM msgs m
  WHERE r.id = m.run_id
    AND ${workflowKey("r.workflow", "r.version")} = ANY($5::text[])
    AND (
      (r.status = 'pending' AND (r.wake_at IS NULL OR r.wake_at <= now()))
      OR (r.status = 'suspended' AND r.wake_at <= now())
      OR (r.status = 'running' AND r.lease_expires_at < now())
    )
  RETURNING r.id, r.workflow, r.version, r.status, r.input, r.executions, r.recoveries, r.events, r.deadline_at,
    r.trace, r.lease_owner, r.lease_expires_at, r.wake_at, r.parent_id, r.forked_from, r.forked_at, r.created_at,
    r.updated_at, r.started_at, r.completed_at, m.msg_id AS claimed_msg_id
)
SELECT m.msg_id, m.read_ct, m.run_id, c.id, c.workflow, c.version, c.status, c.executions, c.recoveries, c.events,
  c.deadline_at, c.trace, c.lease_owner, c.lease_expires_at, c.wake_at, c.parent_id, c.forked_from, c.forked_at,
  c.created_at, c.updated_at, c.started_at, c.completed_at,
  CASE WHEN octet_length(v.input) <= $6 THEN v.input END AS input_text, octet_length(v.input) AS input_bytes,
  extract(epoch FROM now()) * 1000 AS now_ms,
  cur.status AS current_status, cur.lease_expires_at AS current_lease, cur.wake_at AS current_wake
FROM msgs m
LEFT JOIN claimed c ON c.claimed_msg_id = m.msg_id
LEFT JOIN LATERAL (SELECT c.input::text AS input) v ON true
LEFT JOIN ${s}.runs cur ON cur.id = m.run_id`,
    fixMessages: `
WITH fix AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS f(msg_id, action, at_ms)
), removed AS (
  DELETE FROM ${s}.queue_messages q USING fix f WHERE q.msg_id = f.msg_id AND f.action = 'delete' RETURNING q.msg_id
), deferred AS (
  UPDATE ${s}.queue_messages q
  SET vt = CASE WHEN f.at_ms IS NULL THEN 'infinity'::timestamptz ELSE to_timestamp(f.at_ms / 1000.0) END
  FROM fix f WHERE q.msg_id = f.msg_id AND f.action = 'defer'
  RETURNING q.msg_id
)
SELECT (SELECT count(*) FROM removed) AS removed, (SELECT count(*) FROM deferred) AS deferred`,
    journal: `
SELECT st.run_id, st.key, st.name, st.input_hash, st.status, st.attempts, st.wake_at, st.started_at, st.completed_at,
  st.transactional,
  CASE WHEN octet_length(v.output) <= $2 THEN v.output END AS output_text,
  CASE WHEN octet_length(v.error) <= $2 THEN v.error END AS error_text,
  greatest(octet_length(v.output), octet_length(v.error)) AS value_bytes
FROM ${s}.steps st CROSS JOIN LATERAL (SELECT st.output::text AS output, st.error::text AS error) v
WHERE st.run_id = ANY($1::text[])`,
    checkpoints: `
WITH ${lock("SELECT unnest($1::text[])")}, ${checkpointCtes(schema)}
SELECT 'cp' AS kind, run_id, key FROM accepted`,
    transitions: `
WITH ${lock("SELECT unnest($1::text[])")}, ${transitionCtes(schema, 1)}
${transitionsResult}`,
    commit: `
WITH ${lock("SELECT unnest($1::text[]) UNION SELECT unnest($11::text[])")}, ${checkpointCtes(schema)},
${transitionCtes(schema, 11)}
SELECT 'cp' AS kind, run_id, key FROM accepted
UNION ALL ${transitionsResult}`,
    heartbeat: `
WITH lease AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS l(run_id, token, msg_id)
), renewed AS (
  UPDATE ${s}.runs r SET lease_expires_at = now() + $4 ${ms}
  FROM lease l
  WHERE r.id = l.run_id AND r.lease_owner = l.token AND r.status = 'running'
  RETURNING l.token, l.msg_id
), hidden AS (
  UPDATE ${s}.queue_messages q SET vt = now() + $4 ${ms}
  FROM renewed WHERE q.msg_id = renewed.msg_id
  RETURNING q.msg_id
)
SELECT token FROM renewed CROSS JOIN (SELECT count(*) FROM hidden) AS forced`,
    cancel: `
WITH RECURSIVE tree AS (
  SELECT id FROM ${s}.runs WHERE id = $1
  UNION
  SELECT c.id FROM ${s}.runs c JOIN tree t ON c.parent_id = t.id
), cancelled AS (
  UPDATE ${s}.runs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, wake_at = NULL,
    completed_at = now(), updated_at = now()
  WHERE id IN (SELECT id FROM tree) AND status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING id, msg_id, parent_id, workflow, version, created_at
), listed AS (
  INSERT INTO ${s}.cancelled_runs (run_id, workflow, version, created_at)
  SELECT id, workflow, version, created_at FROM cancelled
  ON CONFLICT (run_id) DO UPDATE SET cancelled_at = now()
), removed AS (
  DELETE FROM ${s}.queue_messages q USING cancelled c WHERE q.msg_id = c.msg_id RETURNING q.msg_id
), woken AS (
  -- A parent (outside the cancelled tree) waiting for the cancelled run is woken.
  UPDATE ${s}.runs p SET events = p.events + 1,
    wake_at = CASE WHEN p.status = 'suspended' THEN now() ELSE p.wake_at END, updated_at = now()
  FROM cancelled c
  WHERE c.id = $1 AND p.id = c.parent_id AND p.status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING p.status, p.msg_id
), woken_messages AS (
  UPDATE ${s}.queue_messages q SET vt = now() FROM woken w WHERE q.msg_id = w.msg_id AND w.status = 'suspended'
), notified AS (
  SELECT pg_notify($2, 'cancel:' || id) AS n FROM cancelled
  UNION ALL SELECT pg_notify($2, 'run') FROM woken
)
SELECT EXISTS (SELECT 1 FROM cancelled WHERE id = $1) AS cancelled,
  (SELECT status FROM ${s}.runs WHERE id = $1) AS status,
  (SELECT count(*) FROM removed) + (SELECT count(*) FROM notified) AS forced`,
    sendSignal: `
WITH target AS (
  SELECT id, status FROM ${s}.runs WHERE id = $1 FOR NO KEY UPDATE
), inserted AS (
  INSERT INTO ${s}.signals (run_id, name, payload)
  SELECT id, $2, $3::jsonb FROM target WHERE status NOT IN ('completed', 'failed', 'cancelled')
  RETURNING run_id
), woken AS (
  UPDATE ${s}.runs r SET events = r.events + 1,
    wake_at = CASE WHEN r.status = 'suspended' THEN now() ELSE r.wake_at END, updated_at = now()
  FROM inserted i WHERE r.id = i.run_id
  RETURNING r.status, r.msg_id
), woken_messages AS (
  UPDATE ${s}.queue_messages q SET vt = now() FROM woken w WHERE q.msg_id = w.msg_id AND w.status = 'suspended'
), notified AS (
  SELECT pg_notify($4, 'run') AS n FROM woken WHERE status = 'suspended'
)
SELECT (SELECT status FROM target) AS status, EXISTS (SELECT 1 FROM inserted) AS sent,
  (SELECT count(*) FROM notified) AS forced`,
    takeSignal: `
WITH owned AS (
  SELECT id FROM ${s}.runs WHERE id = $1 AND lease_owner = $2 FOR NO KEY UPDATE
), oldest AS (
  SELECT sg.id FROM ${s}.signals sg JOIN owned o ON sg.run_id = o.id
  WHERE sg.name = $6 AND sg.consumed_key IS NULL
  ORDER BY sg.id LIMIT 1 FOR UPDATE
), taken AS (
  UPDATE ${s}.signals sg SET consumed_key = $3, consumed_at = now() FROM oldest o WHERE sg.id = o.id
  RETURNING sg.payload
), written AS (
  INSERT INTO ${s}.steps AS st (run_id, key, name, input_hash, status, output, attempts, completed_at)
  SELECT $1, $3, $4, $5, 'completed', jsonb_build_object('signal', payload), 1, now() FROM taken
  ON CONFLICT (run_id, key) DO UPDATE SET status = 'completed', output = EXCLUDED.output, error = NULL,
    completed_at = now(), wake_at = NULL
  WHERE st.status NOT IN ('completed', 'failed')
)
SELECT EXISTS (SELECT 1 FROM owned) AS owned, EXISTS (SELECT 1 FROM taken) AS taken,
  (SELECT payload FROM taken) AS payload`,
    setEvent: `
WITH owned AS (
  SELECT id FROM ${s}.runs WHERE id = $1 AND lease_owner = $2 FOR NO KEY UPDATE
), written AS (
  INSERT INTO ${s}.steps (run_id, key, name, input_hash, status, attempts, completed_at)
  SELECT id, $3, $4, $5, 'completed', 1, now() FROM owned
  ON CONFLICT (run_id, key) DO NOTHING
  RETURNING run_id
), published AS (
  INSERT INTO ${s}.events (run_id, key, value) SELECT run_id, $6, $7::jsonb FROM written
  ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
), notified AS (
  SELECT pg_notify($8, 'event:' || run_id) AS n FROM written
)
SELECT EXISTS (SELECT 1 FROM owned) AS owned, (SELECT count(*) FROM notified) AS forced`,
    getEvent: `SELECT value, updated_at FROM ${s}.events WHERE run_id = $1 AND key = $2`,
    retry: `
WITH restarted AS (
  UPDATE ${s}.runs SET status = 'pending', error = NULL, completed_at = NULL, recoveries = 0, wake_at = NULL,
    lease_owner = NULL, lease_expires_at = NULL, events = events + 1, updated_at = now(),
    msg_id = nextval('${schema}.queue_msg_id_seq')
  WHERE id = $1 AND status = 'failed'
  RETURNING id, workflow, version, msg_id
), unlisted AS (
  DELETE FROM ${s}.failed_runs f USING restarted r WHERE f.run_id = r.id
), dropped AS (
  -- The failed entries run again; compensations that ran after the failure are forgotten with it.
  DELETE FROM ${s}.steps st USING restarted r
  WHERE st.run_id = r.id AND (st.status IN ('failed', 'running', 'retrying') OR st.key LIKE 'c%')
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $2, now(), jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM restarted
), notified AS (SELECT pg_notify($3, 'run') AS n FROM restarted)
SELECT EXISTS (SELECT 1 FROM restarted) AS restarted, (SELECT status FROM ${s}.runs WHERE id = $1) AS status,
  (SELECT count(*) FROM notified) AS forced`,
    resume: `
WITH RECURSIVE tree AS (
  SELECT id FROM ${s}.runs WHERE id = $1 AND status = 'cancelled'
  UNION
  SELECT c.id FROM ${s}.runs c JOIN tree t ON c.parent_id = t.id WHERE c.status = 'cancelled'
), resumed AS (
  UPDATE ${s}.runs SET status = 'pending', completed_at = NULL, wake_at = NULL, lease_owner = NULL,
    lease_expires_at = NULL, events = events + 1, updated_at = now(),
    msg_id = nextval('${schema}.queue_msg_id_seq')
  WHERE id IN (SELECT id FROM tree)
  RETURNING id, workflow, version, msg_id
), unlisted AS (
  DELETE FROM ${s}.cancelled_runs c USING resumed r WHERE c.run_id = r.id
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $2, now(), jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM resumed
), notified AS (SELECT pg_notify($3, 'run') AS n FROM (SELECT 1 FROM resumed LIMIT 1) x)
SELECT EXISTS (SELECT 1 FROM resumed WHERE id = $1) AS restarted,
  (SELECT status FROM ${s}.runs WHERE id = $1) AS status, (SELECT count(*) FROM notified) AS forced`,
    transactionalCheckpoint: `
WITH ${lock("SELECT unnest($1::text[])")}, ${checkpointCtes(schema, true)}
SELECT 'cp' AS kind, run_id, key FROM accepted`,
    getRun: `
SELECT r.id, r.workflow, r.version, r.status, r.executions, r.recoveries, r.events, r.deadline_at, r.trace,
  r.lease_owner, r.lease_expires_at, r.wake_at, r.parent_id, r.forked_from, r.forked_at, r.msg_id, r.created_at,
  r.updated_at, r.started_at, r.completed_at,
  CASE WHEN octet_length(v.output) <= $2 THEN v.output END AS output_text,
  CASE WHEN octet_length(v.error) <= $2 THEN v.error END AS error_text,
  greatest(octet_length(v.output), octet_length(v.error)) AS value_bytes
FROM ${s}.runs r
CROSS JOIN LATERAL (SELECT CASE WHEN r.status = 'completed' THEN r.output::text END AS output,
  CASE WHEN r.status = 'failed' THEN r.error::text END AS error) v
WHERE r.id = $1`,
    getInput: `
SELECT CASE WHEN octet_length(v.input) <= $2 THEN v.input END AS input_text, octet_length(v.input) AS input_bytes
FROM ${s}.runs r CROSS JOIN LATERAL (SELECT r.input::text AS input) v WHERE r.id = $1`,
    list: `
SELECT id, workflow, version, status, executions, created_at, updated_at, completed_at,
  (extract(epoch FROM created_at) * 1000000)::bigint::text AS created_us
FROM ${s}.runs
WHERE ($1::text IS NULL OR workflow = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($6::int IS NULL OR version = $6)
  AND ($3::bigint IS NULL
    OR (created_at, id) < (timestamptz 'epoch' + $3::bigint * interval '1 microsecond', $4::text))
ORDER BY created_at DESC, id DESC
LIMIT $5`,
    // The oldest runs of a filter, with the count of all that match (the window runs before LIMIT).
    findRuns: `
SELECT id, count(*) OVER () AS total
FROM ${s}.runs
WHERE workflow = $1
  AND ($2::int IS NULL OR version = $2)
  AND status = ANY($3::text[])
  AND ($4::float8 IS NULL OR created_at >= to_timestamp($4 / 1000.0))
  AND ($5::float8 IS NULL OR created_at < to_timestamp($5 / 1000.0))
ORDER BY created_at, id
LIMIT $6`,
    // A new run from an original: its input copied in the database (never through the client), the
    // chosen journal entries with it, and its queue message; the original is only read.
    forkRun: `
WITH source AS (
  SELECT id, workflow, input FROM ${s}.runs WHERE id = $1
), inserted AS (
  INSERT INTO ${s}.runs (id, workflow, version, status, input, msg_id, forked_from, forked_at, deadline_at)
  SELECT $2, workflow, $3, 'pending', input, nextval('${schema}.queue_msg_id_seq'), id, $5,
    now() + $6::float8 ${ms}
  FROM source
  ON CONFLICT (id) DO NOTHING
  RETURNING id, workflow, version, msg_id
), copied AS (
  INSERT INTO ${s}.steps (run_id, key, name, input_hash, status, output, error, attempts, wake_at, started_at,
    completed_at, transactional)
  SELECT i.id, st.key, st.name, st.input_hash, st.status, st.output, st.error, st.attempts, st.wake_at,
    st.started_at, st.completed_at, st.transactional
  FROM inserted i JOIN ${s}.steps st ON st.run_id = $1 AND st.key = ANY($4::text[])
), sent AS (
  INSERT INTO ${s}.queue_messages (msg_id, queue, vt, message)
  SELECT msg_id, $7, now(), jsonb_build_object('run', id, 'workflow', ${workflowKey("workflow", "version")})
  FROM inserted
), notified AS (SELECT pg_notify($8, 'run') AS n FROM inserted)
SELECT EXISTS (SELECT 1 FROM source) AS found, EXISTS (SELECT 1 FROM inserted) AS created,
  existing.workflow, existing.forked_from, existing.forked_at, (SELECT count(*) FROM notified) AS forced
FROM (SELECT 1) AS one
LEFT JOIN ${s}.runs existing ON existing.id = $2 AND NOT EXISTS (SELECT 1 FROM inserted)`,
    // Every run that has not ended has its message on the queue, so the queue alone answers.
    inFlight: `
SELECT message->>'workflow' AS key, count(*)::int AS runs
FROM ${s}.queue_messages WHERE queue = $1 GROUP BY 1 ORDER BY 1`,
    nextWakeup: `
SELECT extract(epoch FROM (min(vt) - now())) * 1000 AS ms
FROM ${s}.queue_messages WHERE queue = $1 AND vt > now() AND vt < 'infinity'::timestamptz`,
    announceWorker: `
WITH forgotten AS (
  DELETE FROM ${s}.workers WHERE expires_at < now() - interval '1 hour'
)
INSERT INTO ${s}.workers (id, queue, workflows, expires_at) VALUES ($1, $2, $3::text[], now() + $4 ${ms})
ON CONFLICT (id) DO UPDATE SET workflows = EXCLUDED.workflows, heartbeat_at = now(), expires_at = EXCLUDED.expires_at`,
    retireWorker: `DELETE FROM ${s}.workers WHERE id = $1`,
    hasWorkerFor: `
SELECT EXISTS (
  SELECT 1 FROM ${s}.workers WHERE queue = $1 AND expires_at > now() AND $2 = ANY(workflows)
) AS served`,
    unclaimed: `
SELECT m.message->>'workflow' AS key, count(*)::int AS runs
FROM ${s}.queue_messages m
WHERE m.queue = $1 AND m.vt <= now() - $2 ${ms}
  AND NOT EXISTS (
    SELECT 1 FROM ${s}.workers w
    WHERE w.queue = $1 AND w.expires_at > now() AND (m.message->>'workflow') = ANY(w.workflows))
GROUP BY 1 ORDER BY 1`
  }
}
