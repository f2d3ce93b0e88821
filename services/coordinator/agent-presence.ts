// Which agents the coordinator hears: every agent's heartbeat (cxlrc.agt.<host>.agent.heartbeat, a core
// publish every heartbeatMs) marks its host seen, so an alert can name an agent that went silent (a dead agent
// cannot report its own missing heartbeat). Believed from the subject like every agent event (shared/bus/
// trust.ts): only the agent of H may publish under cxlrc.agt.H.>, and the envelope must agree with the subject.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodeJson, EventEnvelope } from "../../shared/bus/codec.ts";
import { PREFIX } from "../../shared/bus/subjects.ts";
import { checkEventSubject } from "../../shared/bus/trust.ts";
import type { Logger } from "../../shared/log.ts";

/** Every host's heartbeat subject (subjects.agentEvent(host, null, "heartbeat")). */
export const AGENT_HEARTBEATS = `${PREFIX}.agt.*.agent.heartbeat`;

export interface AgentPresenceOptions {
  nc: NatsConnection;
  log: Logger;
  /** The agent of `host` was heard from at `nowMs`. */
  onSeen: (host: string, nowMs: number) => void;
  now: () => number;
}

export interface AgentPresence {
  stop(): void;
}

export function startAgentPresence(o: AgentPresenceOptions): AgentPresence {
  // Every coordinator subscribes (no queue group): each one's view is whole on its own, and the alert takes
  // the freshest over coordinators (max by host), so a coordinator cut off from the bus raises nothing.
  const sub: Subscription = o.nc.subscribe(AGENT_HEARTBEATS, {
    callback: (err, m) => {
      if (err) {
        o.log.error({ err: err.message }, "agent heartbeat subscription failed");
        return;
      }
      let env: EventEnvelope;
      try {
        const parsed = EventEnvelope.safeParse(decodeJson(m.data));
        if (!parsed.success) return;
        env = parsed.data;
      } catch {
        return;
      }
      const mismatch = checkEventSubject(m.subject, env, "agent");
      if (mismatch !== null) {
        o.log.debug({ subject: m.subject, why: mismatch }, "agent heartbeat not believed");
        return;
      }
      o.onSeen(env.host, o.now());
    },
  });
  return {
    stop: () => sub.unsubscribe(),
  };
}
