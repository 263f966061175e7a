/**
 * Versions on PostgreSQL beyond the conformance suite: an old and a new version served by two
 * worker processes side by side (test/fixtures/worker.ts), runs recorded by the schema before
 * versions existed, and `enqueue_workflow`'s choice of version.
 */
import { assert, layer } from "@effect/vitest"
import { TestDatabase } from "@pgflows/testing"
import { Effect, Schema } from "effect"
import { Migrator, SqlClient } from "effect/sql"
import * as Crypto from "node:crypto"
import { Identifier, PgflowsConfig, PgMigrations, Step, Store, Workflow } from "pgflows"
import { engine, postgres } from "./conformance/backend.ts"
import { client, countEffects, createEffects, settings, spawnWorker, stopGracefully } from "./fixtures/processes.ts"
import { versionedV1, versionedV2 } from "./fixtures/versionWorkflows.ts"

const Name = Schema.Struct({ name: Schema.String })

layer(TestDatabase.layer, { excludeTestServices: true })("versions across processes and schemas", (it) => {
  it.effect(
    "an old and a new version are served side by side by two worker processes, each run finishing on its own",
    () =>
      Effect.gen(function*() {
        const database = yield* TestDatabase.TestDatabase
        const env = settings(database.url, {
          PGFLOWS_PARK_THRESHOLD: "100 millis",
          PGFLOWS_POLL_INTERVAL: "200 millis"
        })
        yield* createEffects
        const old = yield* spawnWorker("old", { ...env, WORKER_WORKFLOWS: "versioned-v1" })
        const next = yield* spawnWorker("new", { ...env, WORKER_WORKFLOWS: "versioned-v2" })
        const flows = yield* client(env, [versionedV1, versionedV2])
        const ids: Array<readonly [string, number]> = []
        for (let i = 0; i < 4; i++) {
          for (const version of [1, 2]) {
            ids.push([yield* flows.start(versionedV2, { label: `r${i}-v${version}` }, { version }), version])
          }
        }
        for (const [id, version] of ids) {
          const output = yield* flows.result(id, { timeout: "30 seconds" })
          const worker = version === 1 ? "old" : "new"
          assert.match(
            String(output),
            new RegExp(`^v${version}:r\\d-v${version}:${worker}$`),
            "finished on its own version"
          )
          assert.strictEqual((yield* flows.status(id)).version, version)
        }
        // Every step of a version ran in the process that registers it, once per run.
        assert.deepStrictEqual(yield* countEffects, [
          "first_v1@old:4",
          "first_v2@new:4",
          "last_v1@old:4",
          "last_v2@new:4"
        ])
        yield* stopGracefully(old)
        yield* stopGracefully(next)
      }),
    60_000
  )

  it.effect("runs recorded before versions existed keep running on the definition without a version", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const suffix = Crypto.randomBytes(4).toString("hex")
      const names = { schema: `old_${suffix}`, queue: `q_${suffix}`, notifyChannel: `c_${suffix}` }
      const schema = Identifier.makeUnsafe("schema", names.schema)
      const s = Identifier.quote(schema)
      // The schema as pgflows left it before versions: migrations 1 to 7, and a run started from SQL.
      const before = PgMigrations.migrations(schema).filter(([id]) => id <= 7).sort((a, b) => a[0] - b[0])
      yield* sql.unsafe(`CREATE SCHEMA ${s}`)
      yield* Migrator.make({})({
        loader: Effect.succeed(before.map(([id, name, statements]) =>
          [
            id,
            name,
            Effect.succeed(Effect.forEach(statements, (statement) => sql.unsafe(statement), { discard: true }))
          ] as const
        )),
        table: `${names.schema}.migrations`
      })
      yield* sql.unsafe(`INSERT INTO ${s}.settings (queue, notify_channel) VALUES ($1, $2)`, [
        names.queue,
        names.notifyChannel
      ])
      yield* sql.unsafe(`INSERT INTO ${s}.queues (name) VALUES ($1)`, [names.queue])
      yield* sql.unsafe(`SELECT ${s}.enqueue_workflow('legacy', '{"name":"ada"}'::jsonb, 'old-1')`)
      const [message] = yield* sql.unsafe<{ message: unknown }>(`SELECT message FROM ${s}.queue_messages`)
      assert.deepStrictEqual(message?.message, { run: "old-1", workflow: "legacy" }, "a message without a version")
      // The new code: migration 8 when the store is built, the unversioned definition next to version 2.
      const hello = (tag: string) =>
        Step.make(`hello_${tag}`, {
          input: Name,
          output: Schema.String,
          run: (i) => Effect.succeed(`${tag} ${i.name}`)
        })
      const legacy = Workflow.make("legacy", { input: Name, output: Schema.String, run: hello("old") })
      const v2 = Workflow.make("legacy", { version: 2, input: Name, output: Schema.String, run: hello("new") })
      yield* Effect.gen(function*() {
        const flows = yield* engine([legacy, v2])
        assert.strictEqual((yield* flows.status("old-1")).version, 0)
        const fresh = yield* flows.start(legacy, { name: "bob" })
        assert.strictEqual((yield* flows.status(fresh)).version, 2)
        assert.strictEqual(yield* flows.processOnce, 2)
        assert.strictEqual(yield* flows.result("old-1"), "old ada")
        assert.strictEqual(yield* flows.result(fresh), "new bob")
      }).pipe(Effect.provide(postgres.layer(names)))
    }))

  it.effect("enqueue_workflow starts the newest version a live worker serves, or the one it is given", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const flows = yield* engine([versionedV1, versionedV2])
      const store = yield* Store.Store
      const { schema } = yield* PgflowsConfig.PgflowsConfig
      const enqueue = (args: string) =>
        Effect.map(
          sql.unsafe<{ id: string }>(`SELECT ${Identifier.quote(schema)}.enqueue_workflow(${args}) AS id`),
          (rows) => rows[0]!.id
        )
      const none = yield* enqueue(`'versioned', '{"label":"a"}'::jsonb, 'sql-0'`)
      assert.strictEqual((yield* flows.status(none)).version, 0, "no live worker serves the workflow: version 0")
      yield* store.announceWorker({
        worker: "w",
        workflows: [{ workflow: "versioned", version: 1 }, { workflow: "versioned", version: 2 }, {
          workflow: "other",
          version: 9
        }],
        ttlMillis: 60_000
      })
      const newest = yield* enqueue(`'versioned', '{"label":"b"}'::jsonb, 'sql-1'`)
      assert.strictEqual((yield* flows.status(newest)).version, 2, "the newest version a live worker serves")
      const given = yield* enqueue(`'versioned', '{"label":"c"}'::jsonb, 'sql-2', 1`)
      assert.strictEqual((yield* flows.status(given)).version, 1)
      const messages = yield* sql.unsafe<{ message: { workflow: string } }>(
        `SELECT message FROM ${Identifier.quote(schema)}.queue_messages ORDER BY msg_id`
      )
      assert.deepStrictEqual(messages.map((row) => row.message.workflow), [
        "versioned",
        "versioned\u001f2",
        "versioned\u001f1"
      ])
    }).pipe(Effect.provide(postgres.layer())))
})
