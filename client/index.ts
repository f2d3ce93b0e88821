// cxlrc/client: the package's public client API (see client/client.ts). Import it as
//   import { connect } from "cxlrc/client";

export type { AgentEvent, CoordinatorEvent, OutcomeEvent } from "../shared/bus/event-data.ts";
export {
  type BreakerCloseInput,
  type BreakerCloseResult,
  type ClientEvent,
  type ClientOptions,
  type CxlrcClient,
  clientOn,
  connect,
  type Decision,
  type Outcome,
  type OutcomeKind,
  type ResetHandle,
  type ResetInput,
  type WatchOptions,
} from "./client.ts";
export { ClientError, type ClientErrorKind } from "./errors.ts";
