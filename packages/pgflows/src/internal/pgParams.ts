/**
 * Typed array parameters for `@effect/sql-pg`, which infers a parameter's type from its JavaScript
 * value: an array of only nulls, or of integers mixed with fractions, has no single inferred type.
 */
import * as PgTypes from "@effect/sql-pg/PgTypes"
import * as Result from "effect/Result"

const array = (values: ReadonlyArray<unknown>, oid: number): PgTypes.Parameter =>
  Result.getOrThrow(PgTypes.array(values, oid))

export const texts = (values: ReadonlyArray<string | null>): PgTypes.Parameter => array(values, PgTypes.OID.text)

export const floats = (values: ReadonlyArray<number | null>): PgTypes.Parameter => array(values, PgTypes.OID.float8)

export const ints = (values: ReadonlyArray<number | null>): PgTypes.Parameter => array(values, PgTypes.OID.int4)

export const bigints = (values: ReadonlyArray<number | null>): PgTypes.Parameter =>
  array(values.map((value) => value === null ? null : BigInt(value)), PgTypes.OID.int8)
