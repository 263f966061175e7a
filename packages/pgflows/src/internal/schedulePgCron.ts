/**
 * The SQL text of a pg_cron job's command, which pg_cron stores and runs as it is: the one place
 * where pgflows writes values into SQL text instead of binding them. Literals are quoted as
 * PostgreSQL's own `quote_literal` does (`E'...'` with doubled backslashes when the text has one,
 * quotes doubled), so the command means the same whatever `standard_conforming_strings` is in the
 * session pg_cron opens; the schema is a checked `Identifier`. `parse` reads a command written by
 * `render` back (and nothing else).
 */

export interface Command {
  readonly schema: string
  readonly workflow: string
  /** The run input, as JSON text. */
  readonly input: string
  readonly name: string
  /** What the tick time in the run id is truncated to. */
  readonly unit: "minute" | "second"
}

/** PostgreSQL's `quote_literal`. The text must not contain NUL (PostgreSQL text cannot). */
export const literal = (text: string): string => {
  const quoted = text.replaceAll("'", "''")
  return text.includes("\\") ? `E'${quoted.replaceAll("\\", "\\\\")}'` : `'${quoted}'`
}

/** The value of a literal written by `literal`, or `undefined`. */
export const unliteral = (sql: string): string | undefined => {
  const escaped = sql.startsWith("E'")
  const body = escaped ? sql.slice(2) : sql.startsWith("'") ? sql.slice(1) : undefined
  if (body === undefined || !body.endsWith("'")) return undefined
  let out = ""
  const inner = body.slice(0, -1)
  for (let i = 0; i < inner.length; i++) {
    const char = inner[i]!
    if (char === "'") {
      if (inner[i + 1] !== "'") return undefined
      out += "'"
      i++
    } else if (escaped && char === "\\") {
      if (inner[i + 1] !== "\\") return undefined
      out += "\\"
      i++
    } else out += char
  }
  return out
}

const tickFormat = `'YYYY-MM-DD"T"HH24:MI:SS"Z"'`

export const render = (command: Command): string =>
  `SELECT "${command.schema}".enqueue_workflow(${literal(command.workflow)}, ${literal(command.input)}::jsonb, ${
    literal(`schedule:${command.name}:`)
  } || to_char(date_trunc('${command.unit}', now()) AT TIME ZONE 'UTC', ${tickFormat}))`

const quotedLiteral = `(E?'(?:[^']|'')*')`
const pattern = new RegExp(
  `^SELECT "([a-z_][a-z0-9_]*)"\\.enqueue_workflow\\(${quotedLiteral}, ${quotedLiteral}::jsonb, ${quotedLiteral} \\|\\| ` +
    `to_char\\(date_trunc\\('(minute|second)', now\\(\\)\\) AT TIME ZONE 'UTC', '[^']*'\\)\\)$`,
  "s"
)

export const parse = (sql: string): Command | undefined => {
  const match = pattern.exec(sql)
  if (match === null) return undefined
  const workflow = unliteral(match[2]!)
  const input = unliteral(match[3]!)
  const prefix = unliteral(match[4]!)
  if (workflow === undefined || input === undefined || prefix === undefined) return undefined
  if (!prefix.startsWith("schedule:") || !prefix.endsWith(":")) return undefined
  return {
    schema: match[1]!,
    workflow,
    input,
    name: prefix.slice("schedule:".length, -1),
    unit: match[5] as "minute" | "second"
  }
}
