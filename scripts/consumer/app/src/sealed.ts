// Type-level half of src/exports.ts: the compiler refuses internal modules too.
// @ts-expect-error pgflows/internal/* is not exported
import type * as Engine from "pgflows/internal/engine"

export type Sealed = typeof Engine
