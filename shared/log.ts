// pino JSON logs. Bind host, device and request/operation ids once with child loggers.
import { type Logger, pino } from "pino";

export type { Logger };

/** pino's levels, most severe first, and "silent": what every --log-level, logLevel and CXLRC_LOG_LEVEL takes. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Keys that may carry a secret anywhere in the first three levels of a log object (a config, connection
 * options): their values are replaced by "[redacted]" (shared/bus/credentials.ts keeps secrets out of log
 * objects in the first place; this is the second line).
 */
export const REDACT_PATHS: string[] = [
  "pass",
  "password",
  "token",
  "seed",
  "nkeySeed",
  "authenticator",
  "creds",
].flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

export function createLogger(
  name: string,
  opts: { level?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const level = opts.level ?? process.env.CXLRC_LOG_LEVEL ?? "info";
  const redact = { paths: REDACT_PATHS, censor: "[redacted]" };
  return opts.destination ? pino({ name, level, redact }, opts.destination) : pino({ name, level, redact });
}

/** A logger that drops everything (tests, embedded use). */
export const silentLogger: Logger = pino({ level: "silent" });
