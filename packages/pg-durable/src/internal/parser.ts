/**
 * The real PostgreSQL parser and lexer (`libpg-query`, PostgreSQL 18 compiled to WASM). The module loads
 * asynchronously once; after `load`, `parse` is synchronous.
 */
import * as Effect from "effect/Effect"
import * as PgQuery from "libpg-query"

let loaded: Promise<void> | undefined

/** Loads the WASM module (once per process). */
export const load: Effect.Effect<void> = Effect.promise(() => {
  loaded ??= PgQuery.loadModule()
  return loaded
})

export type ParseResult =
  | { readonly _tag: "Ok"; readonly statements: ReadonlyArray<unknown> }
  | { readonly _tag: "Error"; readonly message: string; readonly position: number | undefined }

/** Parses SQL text; `load` must have completed. */
export const parse = (text: string): ParseResult => {
  try {
    const result = PgQuery.parseSync(text) as { stmts?: ReadonlyArray<{ stmt: unknown }> }
    return { _tag: "Ok", statements: (result.stmts ?? []).map((entry) => entry.stmt) }
  } catch (error) {
    const details = (error as { sqlDetails?: { message?: string; cursorPosition?: number } }).sqlDetails
    return {
      _tag: "Error",
      message: details?.message ?? (error instanceof Error ? error.message : String(error)),
      position: details?.cursorPosition
    }
  }
}

/** A token of PostgreSQL's lexer: its text and kind (`SCONST`, `IDENT`, `SQL_COMMENT`, ...). */
export interface Token {
  readonly text: string
  readonly kind: string
}

/**
 * The tokens of SQL text, comments included, as PostgreSQL's lexer reads them; `undefined` when it
 * cannot read the text (an unterminated string or comment), which `parse` then reports.
 */
export const scan = (text: string): ReadonlyArray<Token> | undefined => {
  try {
    return PgQuery.scanSync(text).tokens.map((token) => ({ text: token.text, kind: token.tokenName }))
  } catch {
    return undefined
  }
}

/** Parses PL/pgSQL function bodies (the `CREATE FUNCTION` statements in `text`). */
export const parsePlpgsql = (text: string): ParseResult => {
  try {
    const result = PgQuery.parsePlPgSQLSync(text) as unknown
    return { _tag: "Ok", statements: Array.isArray(result) ? result : [result] }
  } catch (error) {
    return { _tag: "Error", message: error instanceof Error ? error.message : String(error), position: undefined }
  }
}

/** Whether a parse tree contains a node of this type anywhere (`"ParamRef"`, ...). */
export const contains = (tree: unknown, nodeType: string): boolean => {
  if (tree === null || typeof tree !== "object") return false
  if (Array.isArray(tree)) return tree.some((item) => contains(item, nodeType))
  for (const [key, value] of Object.entries(tree)) {
    if (key === nodeType) return true
    if (contains(value, nodeType)) return true
  }
  return false
}
