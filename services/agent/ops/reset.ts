// reset: one entry point for every method, optionally quiescing the function first (`quiesce`). flr (io scope), cxl / sbr (full scope) are register sequences
// written here; vfio and kernel ask the backend (VFIO_DEVICE_RESET, sysfs reset_method + reset). Each step
// is an event: reset.started, reset.initiated, reset.completed (or reset.failed) with the duration.
import type { ResetMethod, Scope } from "../../../shared/bus/agent-messages.ts";
import { CxlrcError, isCxlrcError } from "../../../shared/errors.ts";
import type { OpContext } from "./context.ts";
import { quiesce } from "./quiesce.ts";
import { notReady, requirePresent, waitAnswers } from "./ready.ts";
import { resetCxl } from "./reset-cxl.ts";
import { resetFlr } from "./reset-flr.ts";
import type { ResetResult } from "./reset-result.ts";
import { resetSbr } from "./reset-sbr.ts";
import { describeFunction } from "./topology.ts";

export type { ResetResult } from "./reset-result.ts";

export interface ResetParams {
  bdf: string;
  method: ResetMethod;
  memClear?: boolean;
  kernelMethod?: string;
  /** Quiesce first (Bus Master off; full scope: cache write-back), in this operation. */
  quiesce?: { scope: Scope };
}

export async function reset(ctx: OpContext, p: ResetParams): Promise<ResetResult> {
  // A quiesce that fails leaves the device as it was and throws here: no reset is issued.
  const quiesced = p.quiesce ? await quiesce(ctx, { bdf: p.bdf, scope: p.quiesce.scope }) : undefined;
  const start = ctx.backend.clock.now();
  ctx.emit(p.bdf, "reset.started", { method: p.method, ...(p.memClear ? { memClear: true } : {}) });
  try {
    const r = await run(ctx, p);
    const durationMs = ctx.backend.clock.now() - start;
    ctx.emit(p.bdf, "reset.completed", {
      method: p.method,
      durationMs,
      target: r.target,
      reached: r.reached,
    });
    return { ...r, method: p.method, durationMs, ...(quiesced ? { quiesce: quiesced } : {}) };
  } catch (e) {
    const durationMs = ctx.backend.clock.now() - start;
    const err = isCxlrcError(e)
      ? e
      : new CxlrcError("backend", `${p.method} reset of ${p.bdf} failed`, { bdf: p.bdf }, { cause: e });
    ctx.emit(p.bdf, "reset.failed", { method: p.method, durationMs, kind: err.kind, ...err.details });
    throw err;
  }
}

function run(ctx: OpContext, p: ResetParams): Promise<Omit<ResetResult, "method" | "durationMs">> {
  switch (p.method) {
    case "flr":
      return resetFlr(ctx, p.bdf);
    case "cxl":
      return resetCxl(ctx, p.bdf, p.memClear ?? false);
    case "sbr":
      return resetSbr(ctx, p.bdf);
    case "vfio":
      return resetVfio(ctx, p.bdf);
    case "kernel":
      return resetKernel(ctx, p.bdf, p.kernelMethod);
  }
}

async function resetVfio(ctx: OpContext, bdf: string): Promise<Omit<ResetResult, "method" | "durationMs">> {
  const b = ctx.backend;
  if (!b.capabilities.vfioReset || !b.vfioReset) {
    throw new CxlrcError("unsupported", `the ${b.kind} backend cannot issue VFIO_DEVICE_RESET`, {
      bdf,
      reason: "vfio-reset-unsupported",
    });
  }
  await requirePresent(ctx, bdf);
  await b.vfioReset(bdf);
  return afterBackendReset(ctx, bdf, {});
}

async function resetKernel(
  ctx: OpContext,
  bdf: string,
  kernelMethod: string | undefined,
): Promise<Omit<ResetResult, "method" | "durationMs">> {
  const b = ctx.backend;
  if (!b.capabilities.kernelReset || !b.kernelReset) {
    throw new CxlrcError("unsupported", `the ${b.kind} backend cannot use the kernel's reset file`, {
      bdf,
      reason: "kernel-reset-unsupported",
    });
  }
  const { me } = await describeFunction(b, bdf);
  const method = kernelMethod ?? me.resetMethods[0];
  if (method === undefined) {
    throw new CxlrcError("bad-input", `${bdf}: no kernelMethod given and the kernel lists no reset_method`, {
      bdf,
    });
  }
  if (me.resetMethods.length > 0 && !me.resetMethods.includes(method)) {
    throw new CxlrcError(
      "unsupported",
      `${bdf}: the kernel offers ${me.resetMethods.join(", ")}, not ${method}`,
      {
        bdf,
        reason: "kernel-method-unsupported",
        kernelMethod: method,
        resetMethods: me.resetMethods,
      },
    );
  }
  await requirePresent(ctx, bdf);
  await b.kernelReset(bdf, method);
  return afterBackendReset(ctx, bdf, { kernelMethod: method });
}

/** The backend call returns when the kernel is done; still, success is what reads back: the function answers. */
async function afterBackendReset(
  ctx: OpContext,
  bdf: string,
  details: Record<string, unknown>,
): Promise<Omit<ResetResult, "method" | "durationMs">> {
  const r = await waitAnswers(ctx, bdf, ctx.timeouts.readyTimeoutMs);
  if (!r.ok) throw notReady(bdf, ctx.timeouts.readyTimeoutMs, r.last, details);
  return { bdf, target: bdf, reached: [bdf], details };
}
