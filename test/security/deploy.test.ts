// The deployment files, parsed and checked against the code they deploy so they cannot drift: systemd units
// (systemd-analyze verify and its offline security score), the NATS configurations (nats-server -t with a
// generated accounts file; certificates bound to users; no monitoring port), the identity generator end to
// end, the test CA script (its certificates' subjects are the users the generator writes), the compose file
// (3-node NATS cluster, 2 coordinators, 3 simulated agents) and the Kubernetes manifests (coordinator
// Deployment, agent DaemonSet with its host paths).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { generate, loadRoster } from "../../deploy/nats/gen-users.ts";
import { parseAgentConfig } from "../../services/agent/main.ts";
import { parseCoordinatorConfig } from "../../services/coordinator/config.ts";
import { credentialsFromEnv, loadCredentialsFile } from "../../shared/bus/credentials.ts";
import { certDn, inboxPrefix, type Principal, TEST_CERT_DN } from "../../shared/bus/permissions.ts";
import { natsServerBinary } from "../../shared/natsd/server.ts";
import { defaultFleet } from "../../shared/sim/index.ts";
import { DEPLOY, makeTestCa, REPO, rebaseConfig } from "./env.ts";

const tmp = mkdtempSync(join(tmpdir(), "cxlrc-deploy-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const read = (p: string) => readFileSync(join(DEPLOY, p), "utf8");
type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => {
  expect(v !== null && typeof v === "object" && !Array.isArray(v), JSON.stringify(v)?.slice(0, 80)).toBe(
    true,
  );
  return v as Obj;
};
const arr = (v: unknown): unknown[] => {
  expect(Array.isArray(v), JSON.stringify(v)?.slice(0, 80)).toBe(true);
  return v as unknown[];
};

/** systemd unit → key → values (repeated keys collect). */
function parseUnit(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t === "" || t.startsWith("#") || t.startsWith("[")) continue;
    const i = t.indexOf("=");
    expect(i, `unit line ${t}`).toBeGreaterThan(0);
    const k = t.slice(0, i);
    m.set(k, [...(m.get(k) ?? []), t.slice(i + 1)]);
  }
  return m;
}
const one = (u: Map<string, string[]>, k: string) => (u.get(k) ?? []).join(" ");

/** Names of the CXLRC_NATS_* variables credentials.ts reads. */
const CREDENTIAL_VARS = new Set(
  [
    ...readFileSync(join(REPO, "shared/bus/credentials.ts"), "utf8").matchAll(/v\("(CXLRC_NATS_[A-Z_]+)"\)/g),
  ].map((m) => m[1] as string),
);

describe("systemd units", () => {
  const analyze = (() => {
    for (const p of ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]) {
      try {
        statSync(p);
        return p;
      } catch {
        // next
      }
    }
    return null;
  })();

  it("systemd-analyze is installed (the unit checks need it)", () => {
    expect(analyze, "systemd-analyze not found: install systemd to verify deploy/systemd").not.toBeNull();
  });

  for (const unit of ["cxlrc-coordinator.service", "cxlrc-agent.service"]) {
    it(`${unit}: systemd-analyze verify is clean; offline security exposure is low`, () => {
      const path = join(DEPLOY, "systemd", unit);
      const v = spawnSync(analyze as string, ["verify", path], { encoding: "utf8" });
      expect(`${v.stdout}${v.stderr}`.trim(), "systemd-analyze verify output").toBe("");
      expect(v.status).toBe(0);
      const s = spawnSync(analyze as string, ["security", "--offline=yes", "--no-pager", path], {
        encoding: "utf8",
      });
      const m = /Overall exposure level for \S+: ([0-9.]+)/.exec(`${s.stdout}${s.stderr}`);
      expect(m, s.stdout + s.stderr).not.toBeNull();
      const limit = unit.includes("coordinator") ? 2.0 : 3.5;
      expect(Number(m?.[1])).toBeLessThanOrEqual(limit);
    });
  }

  it("the coordinator is unprivileged; the agent has exactly the capabilities the Kubernetes agent gets", () => {
    const c = parseUnit(read("systemd/cxlrc-coordinator.service"));
    expect(one(c, "DynamicUser")).toBe("yes");
    expect(one(c, "CapabilityBoundingSet")).toBe("");
    expect(one(c, "PrivateDevices")).toBe("yes");
    for (const v of (c.get("Environment") ?? []).map((e) => e.split("=")[0] as string))
      expect(CREDENTIAL_VARS).toContain(v);
    // The only secret is the TLS key, handed over by systemd; the identity is its certificate.
    expect(c.get("LoadCredential")).toEqual(["tls-key.pem:/etc/cxlrc/tls/coordinator-key.pem"]);
    expect(c.get("Environment")).toEqual(["CXLRC_NATS_TLS_KEY_FILE=%d/tls-key.pem"]);
    const a = parseUnit(read("systemd/cxlrc-agent.service"));
    const caps = one(a, "CapabilityBoundingSet").split(/\s+/).sort();
    expect(caps).toEqual(["CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]);
    expect(one(a, "AmbientCapabilities")).toBe("");
    for (const u of [c, a]) {
      expect(one(u, "NoNewPrivileges")).toBe("yes");
      expect(one(u, "ProtectSystem")).toBe("strict");
      expect(one(u, "RestrictAddressFamilies")).toBe("AF_INET AF_INET6 AF_UNIX");
    }
    expect(one(a, "ReadWritePaths").split(/\s+/).sort()).toEqual(["/sys/bus/pci", "/sys/devices"]);
    expect(a.get("DeviceAllow")).toEqual(["/dev/vfio/vfio rw", "char-vfio rw"]);
    const k8s = daemonSetContainer();
    const k8sCaps = arr(obj(obj(k8s.securityContext).capabilities).add).map((x) => `CAP_${String(x)}`);
    expect(k8sCaps.sort()).toEqual(caps);
  });
});

describe("NATS configuration", () => {
  const roster = loadRoster(join(DEPLOY, "compose/roster.json"));
  const out = join(tmp, "ids");
  const tls = join(tmp, "tls");
  makeTestCa(tls, ["client"]);
  const dns = generate(roster, out, { tlsDir: tls });

  for (const file of ["nats-server.conf", "nats-cluster.conf"]) {
    it(`${file}: nats-server -t accepts it with a generated accounts file; certificates map to users; no monitoring`, () => {
      const text = read(`nats/${file}`);
      const dir = join(tmp, file);
      execFileSync("mkdir", ["-p", dir]);
      writeFileSync(join(dir, "accounts.conf"), readFileSync(join(out, "accounts.conf")));
      writeFileSync(join(dir, "server.conf"), rebaseConfig(text, tmp).split(`${tmp}/tls/`).join(`${tls}/`));
      const r = spawnSync(natsServerBinary(), ["-t", "-c", join(dir, "server.conf")], {
        encoding: "utf8",
        env: { ...process.env, NATS_SERVER_NAME: "nats-1" },
      });
      expect(`${r.stdout}${r.stderr}`).toMatch(/is valid/);
      expect(r.status).toBe(0);
      const tlsBlocks = [...text.matchAll(/tls \{([^}]*)\}/g)].map((m) => m[1] as string);
      expect(tlsBlocks.length).toBe(file === "nats-cluster.conf" ? 2 : 1);
      // Clients: the certificate is the identity. Routes: mutual TLS.
      expect(tlsBlocks[0]).toMatch(/^\s*verify_and_map: true$/m);
      for (const b of tlsBlocks.slice(1)) expect(b).toMatch(/^\s*verify: true$/m);
      expect(text).toMatch(/^include "accounts.conf"$/m);
      const settings = text
        .split("\n")
        .filter((l) => !l.trim().startsWith("#"))
        .join("\n");
      expect(settings).not.toMatch(/users\.conf|no_auth_user|password|authorization \{|^\s*accounts \{/m);
      // No monitoring endpoint in a production config (it lists connections, accounts and subjects).
      expect(settings).not.toMatch(/^\s*(http|https|http_port|https_port|monitor_port)\s*[:=]/m);
      expect(text).toMatch(/^max_payload: 1MB$/m);
    });
  }

  it("gen-users writes accounts.conf (users keyed by certificate DN), an env and a credentials file per principal, no secret", () => {
    const accounts = readFileSync(join(out, "accounts.conf"), "utf8");
    expect(readdirSync(out).sort()).toEqual(
      ["accounts.conf", ...roster.principals.flatMap((p) => [`${p.name}.env`, `${p.name}.json`])].sort(),
    );
    for (const p of roster.principals) {
      expect(dns[p.name]).toBe(certDn(TEST_CERT_DN, p.name));
      expect(accounts).toContain(`user: "${dns[p.name]}"`);
      for (const ext of ["env", "json"]) {
        expect(statSync(join(out, `${p.name}.${ext}`)).mode & 0o022, `${p.name}.${ext}`).toBe(0);
      }
      const fromEnv = Object.fromEntries(
        readFileSync(join(out, `${p.name}.env`), "utf8")
          .split("\n")
          .filter((l) => l && !l.startsWith("#"))
          .map((l) => l.split("=") as [string, string]),
      );
      for (const k of Object.keys(fromEnv)) expect(CREDENTIAL_VARS).toContain(k);
      expect(Object.keys(fromEnv).sort()).toEqual(
        [
          "CXLRC_NATS_INBOX_PREFIX",
          "CXLRC_NATS_TLS_CA_FILE",
          "CXLRC_NATS_TLS_CERT_FILE",
          "CXLRC_NATS_TLS_KEY_FILE",
        ].sort(),
      );
      expect(fromEnv.CXLRC_NATS_INBOX_PREFIX).toBe(inboxPrefix(p));
    }
    expect(accounts).not.toMatch(/password|"SU[A-Z2-7]{56}"|BEGIN .*PRIVATE KEY/);
    // Re-running gives the same file.
    expect(generate(roster, out, { tlsDir: tls })).toEqual(dns);
    expect(readFileSync(join(out, "accounts.conf"), "utf8")).toBe(accounts);
  });

  it("the generated env and credentials files load: TLS files and inbox only (agent certificate made by make-test-ca.sh)", () => {
    const p = roster.principals.find((x) => x.name === "agent-alpha") as Principal;
    makeTestCa(join(tmp, "tls-agent"), [p.name]);
    generate(roster, join(tmp, "ids-agent"), { tlsDir: join(tmp, "tls-agent") });
    const env = Object.fromEntries(
      readFileSync(join(tmp, "ids-agent", `${p.name}.env`), "utf8")
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => l.split("=") as [string, string]),
    );
    const c = credentialsFromEnv(env);
    expect(c?.auth).toBeUndefined();
    expect(c?.tls?.certFile).toBe(join(tmp, "tls-agent", `${p.name}.pem`));
    const j = loadCredentialsFile(join(tmp, "ids-agent", `${p.name}.json`));
    expect(j.inboxPrefix).toBe(inboxPrefix(p));
    expect(j.auth).toBeUndefined();
    const sd = join(tmp, "ids-sd");
    generate(roster, sd, { tlsDir: "/t", systemdCredentials: true });
    expect(readFileSync(join(sd, "coordinator-1.env"), "utf8")).not.toMatch(/TLS_KEY_FILE=/);
  });

  it("gen-users runs as a command; a bad --cert-dn or roster is a clear error and writes nothing", () => {
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ["--import", "tsx", join(DEPLOY, "nats/gen-users.ts"), ...args], {
        encoding: "utf8",
        cwd: REPO,
      });
    const dir = join(tmp, "cli");
    const r = run(join(DEPLOY, "compose/roster.json"), dir, "--cert-dn", "CN={name},OU=cxlrc,O=Example");
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/9 principals/);
    expect(readFileSync(join(dir, "accounts.conf"), "utf8")).toContain('user: "CN=sre,OU=cxlrc,O=Example"');
    const bad = run(join(DEPLOY, "compose/roster.json"), join(tmp, "cli-bad"), "--cert-dn", "CN=fixed");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/certificate DN template "CN=fixed" has no \{name\}/);
    expect(() => statSync(join(tmp, "cli-bad"))).toThrow();
    const typo = join(tmp, "typo.json");
    writeFileSync(
      typo,
      JSON.stringify({
        principals: [
          { name: "a", role: "agent", host: "rack1-a", backend: "sysfs" },
          { name: "c", role: "controller", hosts: ["rakc1-*"] },
        ],
      }),
    );
    const t = run(typo, join(tmp, "cli-typo"));
    expect(t.status).toBe(2);
    expect(t.stderr).toMatch(/principals\.1\.hosts\.0: "rakc1-\*" matches no agent host/);
    expect(run("--mount", "x").status).toBe(2);
  });

  it("make-test-ca.sh certificates carry the subject DN the accounts file names (as the server renders it)", () => {
    const dir = join(tmp, "dn");
    makeTestCa(dir, ["controller"]);
    const subject = execFileSync(
      "openssl",
      ["x509", "-in", join(dir, "controller.pem"), "-noout", "-subject", "-nameopt", "RFC2253"],
      { encoding: "utf8" },
    ).trim();
    expect(subject).toBe(`subject=${certDn(TEST_CERT_DN, "controller")}`);
    // Re-running on the same directory keeps the CA and adds a client that chains to it.
    const ca = readFileSync(join(dir, "ca.pem"), "utf8");
    makeTestCa(dir, ["later"]);
    expect(readFileSync(join(dir, "ca.pem"), "utf8")).toBe(ca);
    const v = execFileSync("openssl", ["verify", "-CAfile", join(dir, "ca.pem"), join(dir, "later.pem")], {
      encoding: "utf8",
    });
    expect(v).toMatch(/later.pem: OK/);
  });

  it("make-test-ca.sh: certificates chain to the CA; the server name covers compose and Kubernetes", () => {
    const dir = join(tmp, "ca");
    makeTestCa(dir, ["someone"]);
    const v = execFileSync(
      "openssl",
      ["verify", "-CAfile", join(dir, "ca.pem"), join(dir, "server.pem"), join(dir, "someone.pem")],
      {
        encoding: "utf8",
      },
    );
    expect(v).toMatch(/server.pem: OK/);
    expect(v).toMatch(/someone.pem: OK/);
    const text = execFileSync(
      "openssl",
      ["x509", "-in", join(dir, "server.pem"), "-noout", "-ext", "subjectAltName"],
      {
        encoding: "utf8",
      },
    );
    for (const n of [...natsServices(), "nats.cxlrc.svc", "localhost", "127.0.0.1"])
      expect(text).toContain(n);
    expect(statSync(join(dir, "server-key.pem")).mode & 0o777).toBe(0o600);
    expect(spawnSync("sh", [join(DEPLOY, "tls/make-test-ca.sh"), join(tmp, "bad"), "a/b"]).status).not.toBe(
      0,
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// compose

const compose = () => obj(parseYaml(read("compose/compose.yaml")));
const services = () => obj(compose().services);
function natsServices(): string[] {
  return Object.keys(services()).filter((s) => /^nats-\d+$/.test(s));
}

describe("compose.yaml", () => {
  const roster = loadRoster(join(DEPLOY, "compose/roster.json"));
  const byName = new Map(roster.principals.map((p) => [p.name, p]));

  it("runs a 3-node NATS cluster from nats-cluster.conf, whose routes name exactly those nodes", () => {
    const nats = natsServices();
    expect(nats).toEqual(["nats-1", "nats-2", "nats-3"]);
    const conf = read("nats/nats-cluster.conf");
    const routes = [...conf.matchAll(/"nats-route:\/\/([a-z0-9-]+):6222"/g)].map((m) => m[1]);
    expect(routes).toEqual(nats);
    const version = /v(\d+\.\d+\.\d+)/.exec(
      execFileSync(natsServerBinary(), ["--version"], { encoding: "utf8" }),
    )?.[1];
    for (const n of nats) {
      const s = obj(services()[n]);
      expect(s.image).toBe(`nats:${version}-alpine`);
      expect(obj(s.environment).NATS_SERVER_NAME).toBe(n);
      const vols = arr(s.volumes).map(String);
      expect(vols).toContain("../nats/nats-cluster.conf:/etc/cxlrc/nats/nats-server.conf:ro");
      expect(vols).toContain("./secrets/nats/accounts.conf:/etc/cxlrc/nats/accounts.conf:ro");
      expect(vols.some((v) => v.endsWith(":/var/lib/cxlrc/nats"))).toBe(true);
      expect(vols.filter((v) => v.includes("-key.pem"))).toEqual([
        "./secrets/tls/server-key.pem:/etc/cxlrc/tls/server-key.pem:ro",
      ]);
      // No monitoring port published (nor configured: see the NATS configuration tests).
      expect(s.ports).toBeUndefined();
    }
  });

  it("two coordinators and three simulated agents, each with its own identity and nothing else's", () => {
    const svc = services();
    const others = Object.keys(svc).filter((s) => !natsServices().includes(s));
    const coordinators = others.filter((s) => byName.get(s)?.role === "coordinator");
    const agents = others.filter((s) => byName.get(s)?.role === "agent");
    expect(coordinators).toHaveLength(2);
    expect(agents).toHaveLength(3);
    expect(others.sort()).toEqual([...coordinators, ...agents].sort());
    const fleetHosts = defaultFleet().hosts.map((h) => h.name);
    for (const name of others) {
      const s = obj(svc[name]);
      const p = byName.get(name) as Principal;
      expect(s.env_file).toBe(`./secrets/nats/${name}.env`);
      const vols = arr(s.volumes).map(String);
      expect(vols.filter((v) => v.includes("secrets/nats/"))).toEqual([]);
      expect(vols.filter((v) => v.includes("-key.pem"))).toEqual([
        `./secrets/tls/${name}-key.pem:/run/cxlrc/tls/${name}-key.pem:ro`,
      ]);
      expect(s.read_only).toBe(true);
      expect(s.cap_drop).toEqual(["ALL"]);
      const env = obj(s.environment);
      const cmd = arr(s.command).map(String);
      if (p.role === "agent") {
        expect(env.CXLRC_HOST).toBe(p.host);
        expect(fleetHosts).toContain(p.host);
        expect(p.backend).toBe("sim");
        expect(cmd.slice(0, 2)).toEqual(["serve", "agent"]);
      } else {
        expect(env.CXLRC_COORDINATOR_ID).toBe(name);
        expect(cmd.slice(0, 2)).toEqual(["serve", "coordinator"]);
      }
    }
  });

  it("the service configs validate against the services' own schemas and point at the NATS nodes", () => {
    const urls = natsServices().map((n) => `nats://${n}:4222`);
    const agent = parseAgentConfig({ ...JSON.parse(read("compose/config/agent.json")), host: "alpha" });
    expect(agent.ensureStreams).toBe(false);
    expect(agent.servers).toEqual(urls);
    expect(agent.backend).toBe("sim");
    const coord = parseCoordinatorConfig({ ...JSON.parse(read("compose/config/coordinator.json")), id: "c" });
    expect(coord.nats.servers).toEqual(urls);
    expect(coord.replicas).toBe(3);
    const roster = loadRoster(join(DEPLOY, "compose/roster.json"));
    expect(coord.hosts.sort()).toEqual(
      roster.principals
        .filter((p) => p.role === "agent")
        .map((p) => p.host)
        .sort(),
    );
    expect(read("Dockerfile")).not.toMatch(/COPY (\.|deploy)\b/);
  });
});

// ---------------------------------------------------------------------------------------------------
// Kubernetes

function k8sDocs(file: string): Obj[] {
  return parseAllDocuments(read(`k8s/${file}`))
    .map((d) => {
      if (d.errors.length > 0) throw d.errors[0];
      return d.toJS() as unknown;
    })
    .filter((d) => d !== null)
    .map(obj);
}
function daemonSetContainer(): Obj {
  const ds = k8sDocs("agent.yaml").find((d) => d.kind === "DaemonSet") as Obj;
  return obj(arr(obj(obj(obj(ds.spec).template).spec).containers)[0]);
}

describe("Kubernetes manifests", () => {
  const roster = loadRoster(join(DEPLOY, "k8s/roster.example.json"));

  it("coordinator Deployment: non-root, no capabilities, read-only root, its principal's inbox, valid config", () => {
    const docs = k8sDocs("coordinator.yaml");
    expect(docs.map((d) => d.kind)).toEqual([
      "Namespace",
      "ServiceAccount",
      "ConfigMap",
      "Deployment",
      "Service",
      "ServiceMonitor",
    ]);
    const dep = docs[3] as Obj;
    expect(obj(dep.spec).replicas).toBe(2);
    const pod = obj(obj(obj(dep.spec).template).spec);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(obj(pod.securityContext).runAsNonRoot).toBe(true);
    const c = obj(arr(pod.containers)[0]);
    const sc = obj(c.securityContext);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(obj(sc.capabilities).drop).toEqual(["ALL"]);
    expect(obj(sc.capabilities).add).toBeUndefined();
    const env = new Map(arr(c.env).map((e) => [String(obj(e).name), obj(e).value]));
    for (const k of env.keys()) if (k.startsWith("CXLRC_NATS_")) expect(CREDENTIAL_VARS).toContain(k);
    const principal = roster.principals.find((p) => p.role === "coordinator") as Principal;
    expect(env.get("CXLRC_NATS_INBOX_PREFIX")).toBe(inboxPrefix(principal));
    const mount = arr(c.volumeMounts)
      .map(obj)
      .find((m) => m.name === "nats-identity") as Obj;
    for (const k of ["CXLRC_NATS_TLS_CA_FILE", "CXLRC_NATS_TLS_KEY_FILE", "CXLRC_NATS_TLS_CERT_FILE"]) {
      expect(String(env.get(k)).startsWith(`${String(mount.mountPath)}/`)).toBe(true);
    }
    // The certificate is the identity: no nkey seed, creds file or password.
    expect([...env.keys()].filter((k) => /NKEY|CREDS|USER|PASSWORD/.test(k))).toEqual([]);
    const secretVol = arr(pod.volumes)
      .map(obj)
      .find((v) => v.name === "nats-identity") as Obj;
    expect(Number.parseInt(String(obj(secretVol.secret).defaultMode), 8) & 0o007).toBe(0);
    const cm = docs[2] as Obj;
    const cfg = parseCoordinatorConfig({
      ...JSON.parse(String(obj(cm.data)["coordinator.json"])),
      id: "pod",
    });
    expect(cfg.replicas).toBe(3);
  });

  it("agent DaemonSet: the host paths it needs, hostPID for the holder scan, no privileged mode", () => {
    const docs = k8sDocs("agent.yaml");
    expect(docs.map((d) => d.kind)).toEqual(["ServiceAccount", "DaemonSet", "Service", "ServiceMonitor"]);
    const pod = obj(obj(obj((docs[1] as Obj).spec).template).spec);
    expect(pod.hostPID).toBe(true);
    const hostPaths = arr(pod.volumes).map((v) => String(obj(obj(v).hostPath).path));
    for (const p of ["/sys/bus/pci", "/sys/devices", "/dev/vfio", "/etc/cxlrc"])
      expect(hostPaths).toContain(p);
    const c = daemonSetContainer();
    const sc = obj(c.securityContext);
    expect(sc.privileged).toBe(false);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(obj(sc.capabilities).drop).toEqual(["ALL"]);
    const mounts = arr(c.volumeMounts).map(obj);
    expect(mounts.find((m) => m.mountPath === "/etc/cxlrc")?.readOnly).toBe(true);
    const env = arr(c.env).map(obj);
    expect(env.map((e) => e.name)).toEqual(["CXLRC_NATS_CREDENTIALS_FILE", "CXLRC_HEALTH_URL"]);
    expect(CREDENTIAL_VARS).toContain("CXLRC_NATS_CREDENTIALS_FILE");
    // The example roster's agents are real hardware: no fault injection on them; its controller names its hosts.
    expect(roster.principals.filter((p) => p.role === "agent").every((p) => p.backend === "sysfs")).toBe(
      true,
    );
    expect(roster.principals.filter((p) => p.role === "controller").every((p) => p.hosts !== undefined)).toBe(
      true,
    );
  });
});
