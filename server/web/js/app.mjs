// The web client's page: log in or sign up, browse, upload (picker, folder picker, drag and drop, one
// progress bar per file), download, new folder, rename, move, delete to the trash, the quota bar.
// Names come from other accounts too (shared folders): they only ever reach the page as textContent.

import * as F from "./format.mjs";
import { Drive, MEMORY_LIMIT, humanSize } from "./client.mjs";

const $ = (id) => document.getElementById(id);
let drive = null;
let cwd = null; // node id of the folder shown
let busy = false;
const SHARED = "shared-with-me"; // the virtual folder of shares from other accounts

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function failed(e) {
  console.error(e);
  status(e instanceof F.IntegrityError ? `Refused: ${e.message}. Nothing was saved.` : `Error: ${e.message}`, true);
}

async function guarded(what, fn) {
  if (busy) return;
  busy = true;
  document.body.dataset.busy = "1";
  try {
    status(`${what}…`);
    await fn();
    if ($("status").textContent === `${what}…`) status(""); // (what fn reported stays)
  } catch (e) {
    failed(e);
  } finally {
    busy = false;
    delete document.body.dataset.busy;
  }
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  for (const c of children) e.append(c);
  return e;
}

function path(folderId) {
  const out = [];
  let at = folderId;
  while (at && at !== drive.rootId && at !== SHARED && !drive.incoming.has(at)) {
    out.unshift({ id: at, name: drive.metas.get(at)?.n ?? "?" });
    at = drive.nodeOf(at)?.parent_id;
  }
  const top = [{ id: drive.rootId, name: "My drive" }];
  if (at === SHARED) return [...top, { id: SHARED, name: "Shared with me" }];
  if (at && drive.incoming.has(at)) {
    return [...top, { id: SHARED, name: "Shared with me" }, { id: at, name: drive.incoming.get(at).name }, ...out];
  }
  return [...top, ...out];
}

function sharedRows(body) {
  for (const g of drive.incoming.values()) {
    const row = el("tr", {}, el("td", {}, el("a", { textContent: `${g.name}/`, className: "folder", onclick: () => open(g.nodeId) })),
      el("td", { textContent: `from ${g.ownerName}` }), el("td", { textContent: g.access === "write" ? "read and write" : "read" }),
      el("td"));
    row.dataset.name = g.name;
    body.append(row);
  }
  for (const p of drive.pending) {
    const what = p.name ? `"${p.name}" from ${p.ownerName}` : `a folder from ${p.ownerName}`;
    const how = `compare the fingerprint ${p.fingerprint} with ${p.ownerName}, then accept it`;
    const row = el("tr", { className: "pending" }, el("td", { colSpan: 3, textContent: `Pending: ${what}. To see it here, ${how}.` }),
      el("td", {}, el("button", { textContent: "Accept", className: "accept", onclick: () => accept(p) })));
    row.dataset.pending = p.ownerName;
    body.append(row);
  }
}

async function render() {
  if (!drive.metas.has(cwd) && cwd !== SHARED) cwd = drive.rootId;
  const crumbs = $("crumbs");
  crumbs.replaceChildren();
  for (const [k, c] of path(cwd).entries()) {
    if (k) crumbs.append(" / ");
    crumbs.append(el("a", { textContent: c.name, onclick: () => open(c.id) }));
  }
  const body = $("listing").querySelector("tbody");
  body.replaceChildren();
  if (cwd === drive.rootId && (drive.incoming.size || drive.pending.length)) {
    const row = el("tr", {}, el("td", {}, el("a", { textContent: "Shared with me/", className: "folder shared", onclick: () => open(SHARED) })),
      el("td"), el("td"), el("td"));
    row.dataset.name = "Shared with me";
    body.append(row);
  }
  if (cwd === SHARED) sharedRows(body);
  for (const e of cwd === SHARED ? [] : drive.list(cwd)) {
    const name = e.kind === "dir"
      ? el("a", { textContent: `${e.name}/`, className: "folder", onclick: () => open(e.id) })
      : el("a", { textContent: e.name, className: "file", onclick: () => download(e) });
    const inShare = drive.shareOf(e.id);
    const readOnly = e.shared && (!inShare || inShare.access !== "write");
    const actions = readOnly ? el("td") : el("td", {},
      el("button", { textContent: "Rename", className: "rename", onclick: () => rename(e) }), " ",
      el("button", { textContent: "Move", className: "move", onclick: () => move(e) }), " ",
      el("button", { textContent: "Delete", className: "delete", onclick: () => remove(e) }),
      ...(e.shared ? [] : [" ", el("button", { textContent: "Link", className: "link", onclick: () => link(e) })]),
      ...(e.shared || e.kind !== "dir" ? [] : [" ", el("button", { textContent: "Share", className: "share", onclick: () => share(e) })]));
    const row = el("tr", {}, el("td", {}, name), el("td", { className: "size", textContent: e.kind === "dir" ? "" : humanSize(e.size) }),
      el("td", { textContent: new Date(Number(e.mtime / 1000000n)).toLocaleString() }), actions);
    row.dataset.name = e.name;
    body.append(row);
  }
  if (!drive.failed && $("status").className === "error" && / failed verification /.test($("status").textContent)) status("");
  if (drive.shareFailures) status(`${drive.shareFailures} share(s) failed verification and are not shown.`, true);
  if (drive.failed) status(`${drive.failed} entr${drive.failed === 1 ? "y" : "ies"} failed verification and are not shown.`, true);
  const q = await drive.quota();
  $("quota-used").style.width = `${Math.min(100, (100 * q.used) / Math.max(1, q.quota))}%`;
  $("quota-text").textContent = `${humanSize(q.used)} of ${humanSize(q.quota)} used`;
}

function open(id) {
  cwd = id;
  render().catch(failed);
}

function download(e) {
  guarded(`Downloading ${e.name}`, async () => {
    if (e.size > BigInt(MEMORY_LIMIT) && window.showSaveFilePicker) { // streamed to disk as it is verified
      const out = await (await window.showSaveFilePicker({ suggestedName: e.name })).createWritable();
      try {
        await drive.download(e.id, () => {}, (plain) => out.write(plain));
      } catch (err) {
        await out.abort(); // a failed check leaves no partial file behind
        throw err;
      }
      await out.close();
      return;
    }
    const blob = await drive.download(e.id);
    const url = URL.createObjectURL(new Blob([blob], { type: "application/octet-stream" })); // saved, never rendered
    const a = el("a", { href: url, download: e.name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  });
}

function rename(e) {
  const name = prompt("New name", e.name);
  if (name && name !== e.name) guarded(`Renaming ${e.name}`, async () => { await drive.move(e.id, e.node.parent_id, name); await render(); });
}

function move(e) {
  const folders = [...drive.metas].filter(([id, m]) => m.k === "dir" && id !== e.id && drive.ownerOf(id) === drive.ownerOf(e.id)).map(([id]) => [id, path(id).map((c) => c.name).join("/")]);
  const target = prompt(`Move ${e.name} to which folder?\n${folders.map(([, p]) => p).join("\n")}`, path(cwd).map((c) => c.name).join("/"));
  const dest = folders.find(([, p]) => p === target);
  if (target === null) return;
  if (!dest) {
    status(`No such folder: ${target}`, true);
    return;
  }
  guarded(`Moving ${e.name}`, async () => { await drive.move(e.id, dest[0], e.name); await render(); });
}

function link(e) {
  const password = prompt(`A public link to ${e.name}.\nPassword (leave empty for none)`, "");
  if (password === null) return;
  const days = prompt("Expires after how many days (leave empty for never)", "");
  if (days === null) return;
  if (days && !/^[0-9]+$/.test(days)) {
    status("Expiry: a whole number of days", true);
    return;
  }
  guarded(`Making a link to ${e.name}`, async () => {
    const url = await drive.createLink(e.id, { password, expiresDays: Number(days || 0) });
    const out = $("link-url");
    out.value = url;
    $("link-box").hidden = false;
  });
}

function share(e) {
  const user = prompt(`Share the folder ${e.name} with which account (user name)?`, "");
  if (!user) return;
  const access = prompt("Access: read or write", "read");
  if (access === null) return;
  guarded(`Sharing ${e.name}`, async () => {
    const done = await drive.shareFolder(e.id, user, access.trim().toLowerCase(), async (c) => confirm(
      `Share "${e.name}" with ${c.name} (${access}).\n\n${c.name}'s fingerprint:\n${c.fingerprint}\n\n`
      + `${c.pin ? "It is the key this account pinned for them." : "First contact: compare it with theirs (in person or by phone) before you rely on it."}`));
    status(done ? `Shared ${e.name} with ${done.recipient_name}.` : "Nothing was shared.");
  });
}

function accept(p) {
  guarded(`Accepting shares from ${p.ownerName}`, async () => {
    const c = await drive.contact(p.ownerName);
    const ok = confirm(`Accept shares from ${c.name}?\n\n${c.name}'s fingerprint:\n${c.fingerprint}\n\n`
      + "Compare it with theirs (in person or by phone) before you rely on it.");
    if (!ok) return;
    await drive.acceptContact(c);
    await drive.refresh();
    await render();
  });
}

function remove(e) {
  guarded(`Deleting ${e.name}`, async () => { await drive.trash(e.id); await render(); });
}

/** Files (with their relative paths: a dropped or picked folder keeps its shape), one progress bar each. */
async function uploadAll(items) {
  await guarded("Uploading", async () => {
    for (const { file, rel } of items) {
      const parts = rel.split("/").filter(Boolean);
      let folder = cwd;
      for (const dir of parts.slice(0, -1)) {
        const found = drive.list(folder).find((x) => x.name === dir && x.kind === "dir");
        folder = found ? found.id : await drive.mkdir(folder, dir);
      }
      const bar = el("progress", { max: Math.max(1, file.size), value: 0 });
      const item = el("li", { className: "transfer" }, el("span", { textContent: rel }), bar);
      $("transfers").append(item);
      try {
        await drive.upload(folder, parts.at(-1), file, (sent) => { bar.value = sent; });
        item.classList.add("done");
      } catch (e) {
        if (!e.resume) throw e;
        resumable(item, e.resume);
        throw e;
      }
    }
    await render();
  });
}

/** An upload the network interrupted: its "Resume" button goes on from the first chunk not sent. */
function resumable(item, resume) {
  const button = el("button", { textContent: "Resume", className: "resume" });
  button.onclick = () => guarded("Resuming", async () => {
    button.remove();
    try {
      await resume();
      item.classList.add("done");
    } catch (e) {
      if (e.resume) resumable(item, e.resume);
      throw e;
    }
    await render();
  });
  item.append(" ", button);
}

async function dropped(dataTransfer) {
  const items = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      items.push({ file: await new Promise((ok, no) => entry.file(ok, no)), rel: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, no) => reader.readEntries(ok, no));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  // Every item is taken before the first await: the browser empties the drop's data once the event
  // handler returns, so an entry asked for after an await would be gone.
  const taken = [...dataTransfer.items].filter((it) => it.kind === "file")
    .map((it) => ({ entry: it.webkitGetAsEntry?.() ?? null, file: it.getAsFile() }));
  for (const { entry, file } of taken) {
    if (entry) await walk(entry, "");
    else if (file) items.push({ file, rel: file.name }); // no file-system entry (a browser without one)
  }
  await uploadAll(items);
}

async function entered(d) {
  drive = d;
  cwd = d.rootId;
  $("welcome").hidden = true;
  $("drive").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = d.user;
  $("password").value = "";
  await render();
}

async function main() {
  await F.init(window.sodium);
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded("Logging in (deriving your key)", async () => entered(await Drive.login($("user").value, $("password").value)));
  });
  $("do-signup").addEventListener("click", () => {
    guarded("Creating your account (deriving your key)", async () => entered(await Drive.signup($("user").value, $("password").value)));
  });
  $("logout").addEventListener("click", () => guarded("Logging out", async () => {
    await drive.logout();
    location.reload();
  }));
  $("mkdir").addEventListener("click", () => {
    const name = prompt("Folder name");
    if (name) guarded(`Creating ${name}`, async () => { await drive.mkdir(cwd, name); await render(); });
  });
  $("reload").addEventListener("click", () => guarded("Refreshing", async () => { await drive.refresh(); await render(); }));
  for (const id of ["pick-files", "pick-folder"]) {
    $(id).addEventListener("change", (ev) => {
      const files = [...ev.target.files].map((file) => ({ file, rel: file.webkitRelativePath || file.name }));
      ev.target.value = "";
      uploadAll(files);
    });
  }
  $("link-copy").addEventListener("click", () => {
    navigator.clipboard.writeText($("link-url").value).then(() => status("Link copied."), () => {
      $("link-url").select();
      status("Select the link and copy it.");
    });
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => { ev.preventDefault(); zone.classList.remove("over"); dropped(ev.dataTransfer).catch(failed); });
  document.body.dataset.ready = "1";
}

main().catch(failed);
