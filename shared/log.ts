// pino JSON logs. Bind host, device and request/operation ids once with child loggers.
import { type Logger, pino } from "pino";

export type { Logger };

export function createLogger(
  name: string,
  opts: { level?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const level = opts.level ?? process.env.CXLRC_LOG_LEVEL ?? "info";
  return opts.destination ? pino({ name, level }, opts.destination) : pino({ name, level });
}

/** A logger that drops everything (tests, embedded use). */
export const silentLogger: Logger = pino({ level: "silent" });
