// The web client's drive: sign-up, log-in, the tree from the change feed (every meta opened under its
// parent's key and its chain verified up to the pinned root), downloads verified chunk by chunk,
// uploads, folders, rename, move, trash. Every key stays in this page; the server sees what the Python
// client sends it, byte for byte (docs/FORMAT.md). Checks the Python client makes, this one makes too:
// a failed one raises IntegrityError and yields no plaintext.

import * as F from "./format.mjs";

export const b64 = (bytes) => F.sodium().to_base64(bytes, F.sodium().base64_variants.ORIGINAL);
export const unb64 = (text) => {
  try {
    return F.sodium().from_base64(String(text ?? ""), F.sodium().base64_variants.ORIGINAL);
  } catch {
    throw new F.IntegrityError("the server sent malformed base64");
  }
};
const USER_RE = /^[a-z0-9._-]{3,64}$/;
export const MEMORY_LIMIT = 2 ** 30; // bytes a download gathers in memory; a larger one streams to disk

/** A byte count as people read it (1.3 MiB), as the command line prints it. */
export function humanSize(n) {
  let x = Number(n);
  for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
    if (x < 1024 || unit === "TiB") return unit === "B" ? `${x} B` : `${x.toFixed(1)} ${unit}`;
    x /= 1024;
  }
  return `${x} B`;
}
const MAX_DEPTH = 4096;
const PIN_PREFIX = "megadrive-pin:";

/** An error the server answered (its JSON "error" code and message), or a failed request. */
export class ServerError extends Error {
  constructor(status, code, message) {
    super(message || `the server answered ${status}`);
    this.name = "ServerError";
    this.status = status;
    this.code = code;
  }
}

export function normalizeUser(user) {
  const name = String(user).trim().toLowerCase();
  if (!USER_RE.test(name)) throw new Error("a user name is 3-64 characters of a-z, 0-9, '.', '_', '-'");
  return name;
}

/** The name rule of drive.check_name (FORMAT.md 7.6). */
export function checkName(name) {
  const bytes = new TextEncoder().encode(name);
  if (!name || name === "." || name === ".." || name.includes("/") || name.includes("\0") || bytes.length > 255
      || /[\uD800-\uDFFF]/.test(name.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""))) {
    throw new Error(`not a valid name: ${JSON.stringify(name)}`);
  }
  return name;
}

export async function call(method, path, { token = null, json = undefined, body = undefined, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (json !== undefined) h["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(`/v1${path}`, { method, headers: h, body: json !== undefined ? JSON.stringify(json) : body,
      credentials: "omit", cache: "no-store" });
  } catch {
    throw new ServerError(0, "network", "the server cannot be reached");
  }
  if (!resp.ok) {
    let d = {};
    try {
      d = await resp.json();
    } catch { /* not JSON */ }
    throw new ServerError(resp.status, d.error, d.message);
  }
  return resp;
}

async function callJson(method, path, opts) {
  const resp = await call(method, path, opts);
  try {
    return await resp.json();
  } catch {
    throw new F.IntegrityError("the server sent malformed JSON");
  }
}

function pinOf(user) {
  try {
    return JSON.parse(localStorage.getItem(PIN_PREFIX + user) || "null");
  } catch {
    return null;
  }
}

function kdfJson(kdf) {
  return { alg: kdf.alg, opslimit: kdf.opslimit, memlimit: kdf.memlimit };
}

export class Drive {
  constructor(session) {
    Object.assign(this, session); // user, userId, token, rootId, master
    this.nodes = new Map(); // node id -> the server's newest node of this account's tree
    this.incoming = new Map(); // share root id -> an accepted share's opened grant (and its owner's name)
    this.pending = []; // shares not accepted (on any device) yet: shown, nothing of them loaded
    this.sharedNodes = new Map(); // owner id -> (node id -> node) from that owner's feed
    this.sharedSeq = new Map(); // owner id -> how far that feed was read
    this.owners = new Map(); // verified node id -> the owner of its tree
    this.seen = new Map(); // node id -> [version, rev] verified (never go back)
    this.seq = 0;
    this.metas = new Map(); // node id -> verified meta (this refresh)
  }

  static async signup(user, password, kdf = F.KDF_MODERATE) {
    user = normalizeUser(user);
    if (password.length < 8) throw new Error("a password is at least 8 characters");
    const na = F.sodium();
    const userId = F.hex(na.randombytes_buf(16));
    const salt = na.randombytes_buf(16);
    const { kek, auth } = F.loginKeys(F.deriveRoot(password, salt, kdf, user));
    const master = na.randombytes_buf(32);
    const signSeed = na.randombytes_buf(32);
    const boxSecret = na.randombytes_buf(32);
    const pub = F.identityPublic(signSeed, boxSecret, userId);
    const rootId = F.hex(na.randombytes_buf(16));
    const rootMeta = { n: "", k: "dir", key: F.hex(na.randombytes_buf(32)), fid: "", s: 0n, m: nowNs(), mode: 0o755n,
      v: 0n, r: 0n, p: {} };
    await callJson("POST", "/signup", { json: {
      user, user_id: userId, salt: b64(salt), kdf: kdfJson(kdf), auth_key: b64(auth),
      wrapped_master: b64(F.wrapMaster(kek, master, userId)),
      identity: { sign_pub: b64(pub.signPub), box_pub: b64(pub.boxPub), box_sig: b64(pub.boxSig),
        wrapped_private: b64(F.sealIdentity(master, userId, signSeed, boxSecret)) },
      root: { node_id: rootId, meta: b64(F.sealMeta(master, userId, "", rootId, F.checkMeta(rootMeta))) },
    } });
    localStorage.setItem(PIN_PREFIX + user, JSON.stringify({ kdf: kdfJson(kdf), user_id: userId, salt: F.hex(salt), root: rootId }));
    return Drive.login(user, password);
  }

  /** Prelogin, Argon2id in the page (no weaker than pinned), login, then every check of account.login. */
  static async login(user, password) {
    user = normalizeUser(user);
    const pin = pinOf(user);
    const pre = await callJson("POST", "/prelogin", { json: { user } });
    const kdf = F.checkKdf(pre.kdf, pin ? pin.kdf : null, F.KDF_MODERATE); // (the floor of the Python client's default)
    const salt = unb64(pre.salt);
    if (pin && pin.salt && pin.salt !== F.hex(salt)) {
      throw new F.IntegrityError("the server offered another salt than this browser pinned");
    }
    const { kek, auth } = F.loginKeys(F.deriveRoot(password, salt, kdf, user));
    const resp = await callJson("POST", "/login", { json: { user, auth_key: b64(auth), device: "web browser" } });
    const userId = String(resp.user_id);
    if (pin && pin.user_id && pin.user_id !== userId) throw new F.IntegrityError("the server answered with another account's id");
    const master = F.unwrapMaster(kek, unb64(resp.wrapped_master), userId);
    const id = resp.identity || {};
    const identity = F.openIdentity(master, userId, unb64(id.wrapped_private), unb64(id.sign_pub), unb64(id.box_pub),
      unb64(id.box_sig));
    const rootId = String(resp.root_node_id);
    if (pin && pin.root && pin.root !== rootId) throw new F.IntegrityError("the server names another root folder than this browser pinned");
    const drive = new Drive({ user, userId, token: String(resp.token), rootId, master,
      identity: { boxPub: identity.boxPub, boxSecret: identity.boxSecret, signSecret: identity.signSecret } });
    await drive.refresh();
    if (!drive.metas.has(rootId)) throw new F.IntegrityError("the server's root folder is not this account's root");
    localStorage.setItem(PIN_PREFIX + user, JSON.stringify({ kdf: kdfJson(kdf), user_id: userId, salt: F.hex(salt), root: rootId }));
    return drive;
  }

  async logout() {
    try {
      await call("POST", "/logout", { token: this.token });
    } finally {
      this.master.fill(0);
      this.token = null;
    }
  }

  api(method, path, opts = {}) {
    return callJson(method, path, { ...opts, token: this.token });
  }

  /** Read the change feed from where this page left off, then verify the whole tree again. */
  async refresh() {
    this.seq = await this.readFeed("", this.seq, this.nodes);
    await this.loadShares();
    this.verify();
  }

  /** One change feed (this account's; ``owner=ID&`` for a sharing owner's) from ``since`` into
   * ``nodes``; the seq it reached. */
  async readFeed(query, since, nodes) {
    for (;;) {
      const page = await this.api("GET", `/changes?${query}since=${since}&limit=10000`);
      for (const n of page.changes) {
        if (!/^[0-9a-f]{32}$/.test(n.node_id) || !Number.isSafeInteger(n.seq)) throw new F.IntegrityError("malformed change");
        nodes.set(n.node_id, n);
      }
      if (!Number.isSafeInteger(page.seq) || page.seq < since) throw new F.IntegrityError("the change feed went back");
      since = page.seq;
      if (!page.more) return since;
    }
  }

  /** The sealed contact record (FORMAT.md 7.9): its version and plaintext (0 and null: none yet). A
   * version older than this browser saw is a rollback, refused wherever the record is read. */
  async readRecord() {
    let rec;
    try {
      rec = await this.api("GET", "/records/contacts");
    } catch (e) {
      if (e instanceof ServerError && e.status === 404) return { version: 0, raw: null };
      throw e;
    }
    const version = Number(rec.version);
    const seenKey = `megadrive-record-version:${this.user}`;
    if (!Number.isSafeInteger(version) || version < Number(localStorage.getItem(seenKey) || 0)) {
      throw new F.IntegrityError("the server rolled back the contact record");
    }
    const raw = F.openAccountRecord(this.master, this.userId, "contacts", version, unb64(rec.blob));
    localStorage.setItem(seenKey, String(version));
    return { version, raw };
  }

  /** The contact record's pins and grant epochs (parsed strictly). */
  async loadBook() {
    const { raw } = await this.readRecord();
    return raw ? F.parseContacts(raw) : { pins: new Map(), epochs: new Map() };
  }

  /** Change the sealed contact record (FORMAT.md 7.9) as contacts.ContactBook does: read it, let
   * ``change(doc)`` edit its JSON (pins are only added, flags only go from false to true), write it
   * back under the next version with compare-and-swap, and start over if another device wrote first. */
  async updateBook(change) {
    for (let attempt = 0; attempt < 4; attempt += 1) {
      const { version, raw } = await this.readRecord();
      let doc = { c: {}, e: {} };
      if (raw) {
        F.parseContacts(raw); // (strict: a malformed record is refused, never merged into)
        doc = F.jsonOf(raw, "contact record");
      }
      const before = F.dumpJson(doc);
      change(doc);
      if (F.dumpJson(doc) === before) return;
      const blob = F.sealAccountRecord(this.master, this.userId, "contacts", version + 1, new TextEncoder().encode(F.dumpJson(doc)));
      try {
        const r = await this.api("PUT", "/records/contacts", { json: { blob: b64(blob) }, headers: { "If-Match": `"${version}"` } });
        localStorage.setItem(`megadrive-record-version:${this.user}`, String(r.version));
        return;
      } catch (e) {
        if (!(e instanceof ServerError) || e.status !== 412) throw e;
      }
    }
    throw new Error("the contact record keeps changing on the server; try again");
  }

  /** The server's copy of an account's keys, checked against their own signature (7.2). */
  async serverKeys(name) {
    const k = await this.api("GET", `/users/${encodeURIComponent(name)}/keys`);
    const signPub = unb64(k.sign_pub);
    const boxPub = unb64(k.box_pub);
    const userId = String(k.user_id);
    if (signPub.length !== 32 || boxPub.length !== 32 || !/^[0-9a-f]{32}$/.test(userId)
        || !F.sodium().crypto_sign_verify_detached(unb64(k.box_sig), F.boxKeyStatement(userId, boxPub), signPub)) {
      throw new F.IntegrityError("bad signature");
    }
    return { userId, signPub, boxPub };
  }

  /** The server's copy of an account's keys, self-signed, and the pin this account holds for it (if any). */
  async contact(user) {
    const name = normalizeUser(user);
    const { userId, signPub, boxPub } = await this.serverKeys(name);
    const book = await this.loadBook();
    const pin = book.pins.get(name) || null;
    if (pin && (pin.userId !== userId || !F.eq(pin.signPub, signPub))) {
      throw new Error(`WARNING: the server now presents a DIFFERENT identity key for ${name} (pinned `
        + `${F.fingerprint(pin.signPub)}, now ${F.fingerprint(signPub)}). Nothing was shared or accepted. If they `
        + "did not reset their account, the server may be attacking you.");
    }
    return { name, userId, signPub, boxPub, fingerprint: F.fingerprint(signPub), pin };
  }

  /** Pin (if new) and accept an account: shares from it are then opened, on every device. */
  async acceptContact(c) {
    await this.updateBook((doc) => {
      const p = doc.c[c.name];
      if (p && (p.id !== c.userId || p.k !== F.hex(c.signPub))) throw new Error(`the pin of ${c.name} changed meanwhile`);
      doc.c[c.name] = p ? { ...p, a: true } : { id: c.userId, k: F.hex(c.signPub), v: false, a: true, t: BigInt(Math.floor(Date.now() / 1000)) };
    });
  }

  /** Share one of this account's folders (not the root) with another account, after ``confirm(contact)``
   * said yes to its key (the page shows the fingerprint); the grant is sealed to that key and signed. */
  async shareFolder(folderId, user, access, confirm) {
    if (!["read", "write"].includes(access)) throw new Error("access is read or write");
    const meta = this.metas.get(folderId);
    if (!meta || meta.k !== "dir" || folderId === this.rootId || this.isShared(folderId)) {
      throw new Error("only your own folders (not the root) can be shared");
    }
    const c = await this.contact(user);
    if (c.userId === this.userId) throw new Error("you cannot share with yourself");
    if (!await confirm(c)) return null;
    await this.acceptContact(c);
    const grant = F.sealGrant({ owner: this.userId, recipient: c.userId, nodeId: folderId, access, name: meta.n,
      folderKey: F.fromHex(meta.key), epoch: BigInt(Date.now()) * 1000000n }, this.identity.signSecret, c.boxPub);
    const r = await this.api("POST", "/shares", { json: { node_id: folderId, recipient: c.name, access, grant: b64(grant) } });
    return r.share;
  }

  /** Incoming shares as the Python client's Sharing.sync takes them, read-only: the contact record
   * (never older than this browser saw), each grant under the owner's pinned key, accepted owners'
   * change feeds. A share from an account not accepted yet stays pending: its name and fingerprint are
   * shown, nothing of its tree is loaded until it is accepted (acceptContact, on any device). */
  async loadShares() {
    const book = await this.loadBook();
    const incoming = new Map();
    const pending = [];
    this.shareFailures = 0;
    for (const s of (await this.api("GET", "/shares")).incoming || []) {
      try {
        const ownerName = String(s.owner_name);
        const nodeId = String(s.node_id);
        let pin = book.pins.get(ownerName);
        if (!pin) { // first contact: the server's copy of their key, self-signed, shown to compare (not pinned here)
          const { userId, signPub } = await this.serverKeys(ownerName);
          pin = { user: ownerName, userId, signPub, verified: false, accepted: false };
        }
        if (pin.userId !== s.owner) throw new F.IntegrityError("share owner does not match their pinned key");
        if (nodeId === this.rootId || this.nodes.has(nodeId) || pin.userId === this.userId) {
          throw new F.IntegrityError("a 'share' names one of our own folders");
        }
        const g = F.openGrant(unb64(s.grant), pin.userId, this.userId, nodeId, String(s.access), pin.signPub,
          this.identity.boxPub, this.identity.boxSecret);
        checkName(g.name);
        if (!pin.accepted) {
          pending.push({ ownerName, name: g.name, fingerprint: F.fingerprint(pin.signPub) });
          continue;
        }
        if (g.epoch < (book.epochs.get(nodeId) ?? 0n)) throw new F.IntegrityError("the server replays an outdated share grant");
        incoming.set(nodeId, { ...g, ownerName });
      } catch (e) {
        if (!(e instanceof F.IntegrityError) && !(e instanceof Error && /not a valid name/.test(e.message))) throw e;
        this.shareFailures += 1;
      }
    }
    this.incoming = incoming;
    this.pending = pending;
    for (const owner of new Set([...incoming.values()].map((g) => g.owner))) {
      const nodes = this.sharedNodes.get(owner) || new Map();
      this.sharedSeq.set(owner, await this.readFeed(`owner=${owner}&`, this.sharedSeq.get(owner) || 0, nodes));
      this.sharedNodes.set(owner, nodes);
    }
  }

  /** Open every live node's meta under its parent's key (FORMAT.md 7.10), with its tree's owner in the
   * associated data: this account's tree from its root, each accepted share's from the share's root
   * (whose key the grant gave). A node that fails is left out, with its subtree, and counted: one bad
   * entry never takes the rest of the drive down. */
  verify() {
    this.metas = new Map();
    this.owners = new Map();
    this.failed = 0;
    const root = this.nodes.get(this.rootId);
    if (!root || root.parent_id !== null || root.kind !== "dir") return;
    try {
      this.metas.set(this.rootId, this.accept(root, F.openMeta(this.master, this.userId, "", this.rootId, unb64(root.meta))));
      this.owners.set(this.rootId, this.userId);
    } catch (e) {
      this.failed += 1;
      return;
    }
    for (const g of this.incoming.values()) { // (its own meta is sealed in the owner's tree: the grant names it)
      this.metas.set(g.nodeId, { n: g.name, k: "dir", key: F.hex(g.folderKey), fid: "", s: 0n, m: 0n, mode: 0o755n,
        v: 0n, r: 0n, p: {}, shareRoot: true });
      this.owners.set(g.nodeId, g.owner);
    }
    const memo = new Set();
    const open = (id, owner, nodes, depth) => {
      if (this.metas.has(id)) return this.owners.get(id) === owner ? this.metas.get(id) : null;
      if (memo.has(id) || depth > MAX_DEPTH) return null; // a cycle, or deeper than any tree may be
      memo.add(id);
      const n = nodes.get(id);
      if (!n || n.trashed || n.gone || n.removed || n.parent_id === null) return null;
      if (owner !== this.userId && n.owner !== owner) return null; // (every node of a share is its owner's)
      const parent = open(n.parent_id, owner, nodes, depth + 1);
      if (!parent || parent.k !== "dir") return null;
      try {
        const meta = this.accept(n, F.openMeta(F.fromHex(parent.key), owner, n.parent_id, id, unb64(n.meta)));
        try {
          checkName(meta.n); // (a co-writer of a share could seal "..", "a/b" or a NUL: refused as tree._check does)
        } catch {
          throw new F.IntegrityError("a node with a name the drive refuses");
        }
        this.metas.set(id, meta);
        this.owners.set(id, owner);
        return meta;
      } catch (e) {
        if (!(e instanceof F.IntegrityError)) throw e;
        this.failed += 1;
        return null;
      }
    };
    for (const id of this.nodes.keys()) open(id, this.userId, this.nodes, 0);
    for (const [owner, nodes] of this.sharedNodes) {
      if (![...this.incoming.values()].some((g) => g.owner === owner)) continue;
      for (const id of nodes.keys()) if (!this.nodes.has(id)) open(id, owner, nodes, 0);
    }
  }

  nodeOf(id) {
    const owner = this.owners.get(id);
    return owner === undefined || owner === this.userId ? this.nodes.get(id) : this.sharedNodes.get(owner)?.get(id);
  }

  /** Whether a verified node is in a folder another account shares with this one (read-only here). */
  isShared(id) {
    const owner = this.owners.get(id);
    return owner !== undefined && owner !== this.userId;
  }

  accept(node, meta) {
    if (meta.k !== node.kind) throw new F.IntegrityError("the server's kind differs from the sealed one");
    const [v, r] = this.seen.get(node.node_id) || [-1n, -1n];
    if (meta.v < v || meta.r < r) throw new F.IntegrityError("a node went back to an older version");
    this.seen.set(node.node_id, [meta.v, meta.r]);
    return meta;
  }

  /** A folder's entries, verified, sorted by name. */
  list(folderId) {
    const out = [];
    for (const [id, meta] of this.metas) {
      const n = this.nodeOf(id);
      if (n && !meta.shareRoot && n.parent_id === folderId && !meta.nn) {
        out.push({ id, name: meta.n, kind: meta.k, size: meta.s, mtime: meta.m, meta, node: n, shared: this.isShared(id) });
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The key new entries of a folder are sealed under; a folder another account shares is written only
   * with write access. */
  folderKey(folderId) {
    const meta = this.metas.get(folderId);
    if (!meta || meta.k !== "dir") throw new Error("no such folder");
    this.writable(folderId);
    return F.fromHex(meta.key);
  }

  /** The share a node is in (null: this account's own tree). */
  shareOf(id) {
    if (!this.isShared(id)) return null;
    for (let at = id; at; at = this.nodeOf(at)?.parent_id) {
      if (this.incoming.has(at)) return this.incoming.get(at);
    }
    return null;
  }

  writable(id) {
    const share = this.shareOf(id);
    if (this.isShared(id) && (!share || share.access !== "write")) {
      throw new Error("this folder is shared with you for reading only");
    }
  }

  /** The owner of the tree a folder is in: their id goes into every record sealed there, and their
   * quota holds the chunks (``X-MegaDrive-Owner``). */
  ownerOf(id) {
    return this.owners.get(id) ?? this.userId;
  }

  taken(folderId, name) {
    return this.list(folderId).some((e) => e.name === name);
  }

  async mkdir(parentId, name) {
    checkName(name);
    if (this.taken(parentId, name)) throw new Error(`already exists: ${name}`);
    const na = F.sodium();
    const id = F.hex(na.randombytes_buf(16));
    const meta = F.checkMeta({ n: name, k: "dir", key: F.hex(na.randombytes_buf(32)), fid: "", s: 0n, m: nowNs(),
      mode: 0o755n, v: 0n, r: 0n, p: {} });
    const blob = F.sealMeta(this.folderKey(parentId), this.ownerOf(parentId), parentId, id, meta);
    const r = await this.api("POST", "/nodes", { json: { node_id: id, parent_id: parentId, kind: "dir", meta: b64(blob) } });
    this.ingest(r.node);
    return id;
  }

  /** Upload a File or Blob as a new file: chunk by chunk (sealed here, sent one at a time, so memory
   * stays at a chunk), then created with its first version in one request. ``progress(sent, total)``.
   * A chunk whose request fails is tried again (RETRIES times, waiting longer each time); if it still
   * fails, the error carries ``resume()``, which goes on from that chunk under the same keys (nothing
   * sent is sent again). The keys of an unfinished upload live only in this page. */
  async upload(parentId, name, blob, progress = () => {}) {
    checkName(name);
    if (this.taken(parentId, name)) throw new Error(`already exists: ${name}`);
    const na = F.sodium();
    this.folderKey(parentId); // (before anything is sent: a folder shared for reading is refused here)
    const state = { parentId, name, blob, progress, owner: this.ownerOf(parentId), id: F.hex(na.randombytes_buf(16)),
      contentKey: na.randombytes_buf(32), fileId: na.randombytes_buf(16), chunkIds: [] };
    return this.continueUpload(state);
  }

  async continueUpload(state) {
    const { blob, contentKey, fileId, progress } = state;
    const size = blob.size;
    const n = F.chunkCount(size);
    try {
      for (let i = state.chunkIds.length; i < n; i += 1) {
        const plain = new Uint8Array(await blob.slice(i * F.CHUNK_SIZE, Math.min(size, (i + 1) * F.CHUNK_SIZE)).arrayBuffer());
        const sealed = F.sealChunk(contentKey, fileId, i, i === n - 1, plain);
        const cid = F.contentId(sealed);
        const headers = { "Content-Type": "application/octet-stream" };
        if (state.owner !== this.userId) headers["X-MegaDrive-Owner"] = state.owner; // (their quota)
        await retried(() => call("PUT", `/chunks/${cid}`, { token: this.token, body: sealed, headers }));
        state.chunkIds.push(F.fromHex(cid));
        progress(Math.min(size, (i + 1) * F.CHUNK_SIZE), size);
      }
      const { id, parentId, name } = state;
      const manifest = F.sealManifest(contentKey, state.owner, id, 1, { nodeId: id, fileId, version: 1, size,
        chunkIds: state.chunkIds, commitment: F.keyCommitment(contentKey, fileId) });
      const meta = F.checkMeta({ n: name, k: "file", key: F.hex(contentKey), fid: F.hex(fileId), s: BigInt(size),
        m: BigInt(blob.lastModified || Date.now()) * 1000000n, mode: 0o644n, v: 1n, r: 1n, p: {} });
      const r = await retried(() => this.api("POST", "/nodes", { json: { node_id: id, parent_id: parentId, kind: "file",
        meta: b64(F.sealMeta(this.folderKey(parentId), state.owner, parentId, id, meta)),
        version: { manifest: b64(manifest), chunks: state.chunkIds.map(F.hex) } } }), (e) => e.code === "exists");
      this.ingest(r.node);
      progress(size, size);
      return id;
    } catch (e) {
      if (e instanceof ServerError && (e.status === 0 || e.status >= 500)) e.resume = () => this.continueUpload(state);
      throw e;
    }
  }

  /** A file's plaintext, every chunk checked against the manifest (FORMAT.md 7.4, 7.5) before it is
   * handed on: to ``sink(plain)`` chunk by chunk if given (a file written to disk as it comes), else
   * gathered into a Blob (only for files up to MEMORY_LIMIT: the page says so for larger ones). */
  async download(fileId, progress = () => {}, sink = null) {
    const meta = this.metas.get(fileId);
    const node = this.nodeOf(fileId);
    const owner = this.owners.get(fileId);
    if (!meta || !node || meta.k !== "file") throw new Error("no such file");
    if (meta.l || meta.t || meta.lt) throw new Error("not a regular file");
    // What the file holds is decided by its sealed meta, never by the server's unsealed version number.
    if (BigInt(node.version) !== meta.v) throw new F.IntegrityError("the server's version differs from the sealed one");
    if (meta.v === 0n) {
      if (meta.s !== 0n) throw new F.IntegrityError("a file with content and no version");
      return sink ? null : new Blob([]);
    }
    if (!sink && meta.s > BigInt(MEMORY_LIMIT)) {
      throw new Error(`this browser cannot write a file as it downloads; it saves files up to ${humanSize(MEMORY_LIMIT)} `
        + "from memory (use a Chromium-based browser, a mount or `megadrive get`)");
    }
    const m = await this.api("GET", `/nodes/${fileId}/versions/${node.version}`);
    const manifest = F.openManifest(F.fromHex(meta.key), owner, fileId, meta.v, F.fromHex(meta.fid), unb64(m.manifest));
    if (manifest.size !== meta.s) throw new F.IntegrityError("the manifest's size differs from the sealed one");
    const parts = [];
    for (let i = 0; i < manifest.chunkIds.length; i += 1) {
      const resp = await call("GET", `/chunks/${F.hex(manifest.chunkIds[i])}`, { token: this.token });
      const plain = F.openChunk(F.fromHex(meta.key), manifest, i, new Uint8Array(await resp.arrayBuffer()));
      if (sink) await sink(plain);
      else parts.push(plain);
      progress(i + 1, manifest.chunkIds.length);
    }
    return sink ? null : new Blob(parts);
  }

  /** Rename and/or move: the meta is sealed again under the destination folder's key (rev + 1). */
  async move(nodeId, newParentId, newName) {
    checkName(newName);
    this.writable(nodeId);
    const meta = this.metas.get(nodeId);
    const node = this.nodeOf(nodeId);
    if (!meta || !node || meta.shareRoot || nodeId === this.rootId) throw new Error("cannot move this");
    if (this.ownerOf(newParentId) !== this.ownerOf(nodeId)) throw new Error("a node cannot move into another account's tree");
    if (newParentId !== node.parent_id || newName !== meta.n) {
      if (this.taken(newParentId, newName)) throw new Error(`already exists: ${newName}`);
    }
    for (let at = newParentId; at; at = this.nodeOf(at)?.parent_id) {
      if (at === nodeId) throw new Error("a folder cannot move into itself");
    }
    if (newParentId !== node.parent_id && !this.isShared(nodeId) && await this.keysLeave(node.parent_id, newParentId)) {
      throw new Error("moving this out of a shared or linked folder renews its keys, which this page cannot do yet: "
        + "move it with `megadrive mv`");
    }
    const next = { ...meta, n: newName, r: meta.r + 1n, c: nowNs() };
    const body = { meta: b64(F.sealMeta(this.folderKey(newParentId), this.ownerOf(nodeId), newParentId, nodeId, F.checkMeta(next))),
      base_seq: node.seq };
    if (newParentId !== node.parent_id) body.parent_id = newParentId;
    const r = await this.api("PATCH", `/nodes/${nodeId}`, { json: body });
    this.ingest(r.node);
  }

  /** Whether a move from one of our folders to another leaves an outgoing share or link behind: who holds
   * the keys over the old place but not over the new (the Python client re-keys then; this page refuses). */
  async keysLeave(oldParentId, newParentId) {
    const [shares, links] = await Promise.all([this.api("GET", "/shares"), this.api("GET", "/links")]);
    const holders = [...(shares.outgoing || []).map((s) => [s.node_id, `share:${s.recipient}`]),
      ...(links.links || []).map((l) => [l.node_id, `link:${l.link_id}`])];
    const over = (folderId) => {
      const chain = new Set();
      for (let at = folderId, n = 0; at && n <= MAX_DEPTH; at = this.nodeOf(at)?.parent_id, n += 1) chain.add(at);
      return new Set(holders.filter(([id]) => chain.has(id)).map(([, who]) => who));
    };
    const after = over(newParentId);
    return [...over(oldParentId)].some((who) => !after.has(who));
  }

  async trash(nodeId) {
    this.writable(nodeId);
    if (nodeId === this.rootId || this.incoming.has(nodeId)) throw new Error("this folder cannot be deleted here");
    const r = await this.api("DELETE", `/nodes/${nodeId}`);
    this.ingest(r.node);
  }

  /** A public link to a file, or to a folder and all under it: its record (the file's content key, or the
   * folder's key) sealed under a fresh key (in the URL's fragment, never sent) or under a key derived
   * from ``password`` (the fragment is then "p"). */
  async createLink(nodeId, { password = "", expiresDays = 0 } = {}) {
    if (this.isShared(nodeId)) throw new Error("only the owner can link this");
    if (nodeId === this.rootId) throw new Error("the root folder cannot be linked; link a folder in it");
    const meta = this.metas.get(nodeId);
    if (!meta || meta.l || meta.t || meta.lt) throw new Error("links are for files and folders");
    if (meta.k === "file" && meta.v === 0n) throw new Error("the file has no content yet");
    const na = F.sodium();
    const record = meta.k === "dir"
      ? { owner: this.userId, nodeId, name: meta.n, kind: "dir", key: F.fromHex(meta.key) }
      : { owner: this.userId, nodeId, name: meta.n, kind: "file", key: F.fromHex(meta.key), fileId: F.fromHex(meta.fid) };
    let key;
    let fragment;
    const body = { node_id: nodeId, salt: null, kdf: null,
      expires: expiresDays > 0 ? Math.floor(Date.now() / 1000 + expiresDays * 86400) : null };
    if (password) {
      const salt = na.randombytes_buf(16);
      key = F.deriveLinkKey(password, salt, F.KDF_MODERATE);
      Object.assign(body, { salt: b64(salt), kdf: { ...F.KDF_MODERATE } });
      fragment = "p";
    } else {
      key = na.randombytes_buf(32);
      fragment = na.to_base64(key, na.base64_variants.URLSAFE_NO_PADDING);
    }
    body.blob = b64(F.sealLink(key, record));
    const r = await this.api("POST", "/links", { json: body });
    return `${location.origin}/l/${r.link.link_id}#${fragment}`;
  }

  async quota() {
    const a = await this.api("GET", "/account");
    return { used: Number(a.used), quota: Number(a.quota) };
  }

  ingest(node) {
    if (!node || !/^[0-9a-f]{32}$/.test(node.node_id)) throw new F.IntegrityError("malformed node");
    const owner = node.owner && node.owner !== this.userId ? String(node.owner) : null;
    if (owner && [...this.incoming.values()].some((g) => g.owner === owner)) this.sharedNodes.get(owner)?.set(node.node_id, node);
    else this.nodes.set(node.node_id, node); // (the feeds' seq is not advanced: changes before it may be missing)
    this.verify();
  }
}

const RETRIES = 4;

/** A request that failed for the network or the server's moment (5xx) is sent again, waiting 0.25, 0.5,
 * 1 and 2 s; ``done(e)`` says an error that means an earlier try went through. */
async function retried(fn, done = () => false) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await fn();
    } catch (e) {
      if (attempt > 0 && done(e)) throw new Error("the server answered a retried request as done; refresh to see it");
      if (!(e instanceof ServerError) || !(e.status === 0 || e.status >= 500) || attempt >= RETRIES) throw e;
      await new Promise((ok) => setTimeout(ok, 250 * 2 ** attempt));
    }
  }
}

function nowNs() {
  return BigInt(Date.now()) * 1000000n;
}
