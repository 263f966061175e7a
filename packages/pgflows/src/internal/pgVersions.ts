/**
 * Workflow versions in SQL: the key of a (workflow, version) as `internal/versions.ts` defines it,
 * and the newest version that a live worker serves. Shared by the migrations (`enqueue_workflow`)
 * and the statements of `PgStore`.
 */

/** SQL for the key of `workflow` at `version` (two SQL expressions): the name alone for version 0. */
export const workflowKey = (workflow: string, version: string): string =>
  `(${workflow} || CASE WHEN ${version} = 0 THEN '' ELSE chr(31) || (${version})::text END)`

/**
 * SQL for the newest version of `workflow` that a live worker on `queue` announced (0 when none
 * does); `schema` is the quoted schema.
 */
export const newestServed = (schema: string, queue: string, workflow: string): string =>
  `coalesce((SELECT max(CASE WHEN strpos(k, chr(31)) = 0 THEN 0 ELSE split_part(k, chr(31), 2)::int END)
    FROM ${schema}.workers w CROSS JOIN LATERAL unnest(w.workflows) AS k
    WHERE w.queue = ${queue} AND w.expires_at > now() AND split_part(k, chr(31), 1) = ${workflow}), 0)`
