/**
 * The ids `start` gives runs: UUIDs of version 7 (RFC 9562), whose first 48 bits are the creation
 * time in milliseconds, so new runs land at the end of the primary-key index and ids sort by time.
 */
import * as Crypto from "node:crypto"

/**
 * A version 7 UUID for a run created at `millis`: a version 4 UUID (from Node's cached entropy;
 * `randomBytes(16)` costs a system call each time) with its first 48 bits replaced by the time and
 * its version digit by 7. Its variant bits, and 74 random bits, are kept.
 */
export const make = (millis: number): string => {
  const random = Crypto.randomUUID()
  const time = millis.toString(16).padStart(12, "0")
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`
}
