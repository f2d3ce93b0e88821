// machines/: the device lifecycle statechart and the reset policy, pure. One door for the services.
export * from "./facts.ts";
export * from "./invariants.ts";
export * from "./lifecycle.ts";
export * from "./lifecycle-types.ts";
export * from "./op-id.ts";
export * from "./policy/breaker.ts";
export * from "./policy/budget.ts";
export * from "./policy/concurrency.ts";
export * from "./policy/deadlines.ts";
export * from "./policy/defaults.ts";
export * from "./policy/gates.ts";
export * from "./policy/method.ts";
export * from "./policy/plan.ts";
export * from "./policy/types.ts";
