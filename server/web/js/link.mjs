// A public link, opened without an account: the key comes from the URL's fragment (never sent to the
// server), or from a password run through Argon2id here; the record, the manifest and every chunk are
// verified before a byte is saved. A file up to MEMORY_LIMIT is assembled in memory and saved as a
// download once every chunk passed; a larger one streams to disk where the browser can write a file
// as it goes (the File System Access API: a failed check discards the partial file), and elsewhere the
// page says it is past this browser's limit.

import * as F from "./format.mjs";
import { MEMORY_LIMIT, call, checkName, humanSize, unb64 } from "./client.mjs";

const $ = (id) => document.getElementById(id);
let opened = null; // { linkId, record, manifest }

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function busy(on) {
  if (on) document.body.dataset.busy = "1";
  else delete document.body.dataset.busy;
}

function failure(e) {
  if (e.status === 451) return `This file was removed after an abuse notice: ${e.message}`;
  if (e.status === 404) return "This link does not exist, has expired or was removed by its owner.";
  if (e instanceof F.IntegrityError) return `Refused: ${e.message}. Nothing was saved.`;
  return `Error: ${e.message}`;
}

function parseLocation() {
  const m = /^\/l\/([A-Za-z0-9_-]{1,64})$/.exec(location.pathname);
  if (!m || !location.hash || location.hash.length < 2) throw new Error("this is not a whole MegaDrive link (it needs the part after #)");
  return { linkId: m[1], fragment: location.hash.slice(1) };
}

async function open(password = null) {
  const { linkId, fragment } = parseLocation();
  const info = await (await call("GET", `/l/${linkId}`)).json();
  let key;
  if (fragment === "p") {
    if (!info.salt || !info.kdf) throw new F.IntegrityError("the link says it needs a password, the server disagrees");
    if (password === null) {
      $("ask-password").hidden = false;
      return;
    }
    key = F.deriveLinkKey(password, unb64(info.salt), info.kdf);
  } else {
    try {
      key = F.sodium().from_base64(fragment, F.sodium().base64_variants.URLSAFE_NO_PADDING);
    } catch {
      throw new Error("the link's key is malformed (was it copied whole?)");
    }
    if (key.length !== F.KEY_BYTES) throw new Error("the link's key is malformed (was it copied whole?)");
  }
  const owner = String(info.owner);
  const nodeId = String(info.node_id);
  const version = Number(info.version);
  const record = F.openLink(key, owner, nodeId, unb64(info.blob));
  checkName(record.name); // it becomes the saved file's name
  if (!Number.isSafeInteger(version) || version < 1) throw new F.IntegrityError("the server claims the file has no content");
  const manifest = F.openManifest(record.contentKey, owner, nodeId, version, record.fileId, unb64(info.manifest));
  opened = { linkId, record, manifest };
  $("ask-password").hidden = true;
  $("file-name").textContent = record.name;
  $("file-size").textContent = humanSize(manifest.size);
  $("progress").max = Math.max(1, manifest.chunkIds.length);
  $("file").hidden = false;
  if (!window.showSaveFilePicker && manifest.size > BigInt(MEMORY_LIMIT)) {
    $("limit").hidden = false;
    $("limit").textContent = `This browser cannot write a file as it downloads; it saves files up to ${humanSize(MEMORY_LIMIT)} `
      + "from memory. Open the link in a browser that can (Chromium-based), or with `megadrive get`.";
    $("save").disabled = true;
  }
}

/** Every chunk fetched and verified in order; ``sink(plain)`` gets each. Nothing unverified passes. */
async function chunks(sink) {
  const { linkId, record, manifest } = opened;
  for (let i = 0; i < manifest.chunkIds.length; i += 1) {
    const resp = await call("GET", `/l/${linkId}/chunks/${F.hex(manifest.chunkIds[i])}`);
    await sink(F.openChunk(record.contentKey, manifest, i, new Uint8Array(await resp.arrayBuffer())));
    $("progress").value = i + 1;
  }
}

async function save() {
  const name = opened.record.name;
  if (opened.manifest.size > BigInt(MEMORY_LIMIT)) {
    const handle = await window.showSaveFilePicker({ suggestedName: name });
    const out = await handle.createWritable();
    try {
      await chunks((plain) => out.write(plain));
    } catch (e) {
      await out.abort(); // the partial file is discarded, never left as if whole
      throw e;
    }
    await out.close();
    return;
  }
  const parts = [];
  await chunks((plain) => parts.push(plain));
  const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function guarded(what, fn) {
  busy(true);
  try {
    status(`${what}…`);
    await fn();
    status("");
  } catch (e) {
    console.error(e);
    status(failure(e), true);
  } finally {
    busy(false);
  }
}

async function main() {
  await F.init(window.sodium);
  $("ask-password").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded("Opening the link", () => open($("link-password").value));
  });
  $("save").addEventListener("click", () => guarded("Downloading", save));
  document.body.dataset.ready = "1";
  await guarded("Opening the link", () => open());
}

main().catch((e) => status(failure(e), true));
