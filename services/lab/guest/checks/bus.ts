// Check 2, over the bus: the whole product inside the guest (guest-bus.ts: nats-server, the agent service on
// the sysfs backend, the coordinator). A fleet controller's reset request goes into the request stream, the
// coordinator plans (the model has no CXL Reset: a secondary bus reset at the root port), the agent saves,
// resets, restores and verifies on the real kernel, and the event stream shows it. The device starts without
// a driver here (the driver hand-over has its own checks: driver-handover.ts).
// The coordinator's methods are cxl/sbr/vfio; the kernel's own `reset` file is exercised by kernel-reset.
import type { JetStreamManager } from "@nats-io/jetstream";
import { jetstream } from "@nats-io/jetstream";
import { EventEnvelope, encodeJson } from "../../../../shared/bus/codec.ts";
import type { ResetRequestInput } from "../../../../shared/bus/requests.ts";
import { STREAMS, subjects } from "../../../../shared/bus/subjects.ts";
import type { Check } from "../check.ts";
import { deviceState, startClean } from "../device-state.ts";
import { commitDecoder, findHdm } from "../firmware.ts";
import { guestBus, HOST } from "../guest-bus.ts";
import { decoderRange, onlyCxlDevice } from "./common.ts";

const OUTCOME_TIMEOUT_MS = 120_000;

/** Every event of one request in CXLRC_EVENTS, in stream order. */
async function eventsOf(jsm: JetStreamManager, requestId: string): Promise<EventEnvelope[]> {
  const info = await jsm.streams.info(STREAMS.events.name);
  const out: EventEnvelope[] = [];
  if (info.state.messages === 0) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.events.name, { seq }).catch(() => null);
    if (!m) continue;
    const e = EventEnvelope.parse(m.json());
    if (e.requestId === requestId) out.push(e);
  }
  return out;
}

export const busReset: Check = {
  name: "bus-reset",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.start = await startClean(lab, bdf, null);
    const range = decoderRange(0);
    rec.range = range;
    rec.firmware = await commitDecoder(lab.backend, await findHdm(lab.backend, bdf), 0, range);
    const bus = await guestBus(lab);
    const request: ResetRequestInput = {
      requestId: "kernel-lab-sbr-1",
      host: HOST,
      bdf,
      scope: "full",
      method: "sbr",
      reason: "kernel lab: full-scope reset over the bus",
    };
    await jetstream(bus.nc).publish(subjects.request(request.host), encodeJson(request), {
      msgID: request.requestId,
    });
    rec.outcome = await bus.coordinator.waitForOutcome(request.requestId, OUTCOME_TIMEOUT_MS);
    rec.events = (await eventsOf(bus.jsm, request.requestId)).map((e) => ({
      source: e.source,
      kind: e.kind,
      bdf: e.bdf,
      data: e.data,
    }));
    rec.final = await deviceState(lab, bdf);
    lab.takeEvents();
  },
};
