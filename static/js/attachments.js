/* attachments.js: files in a room (issue 21). The upload button and drag-and-drop with a progress bar,
 * the tray of uploads waiting for the next message, and how a message's attachments look (images as a
 * thumbnail that opens the full image, other files as a card with name and size). Runs after global.js
 * and before chat.js (deferred; base.html and room.html fix the order) and declares no globals: chat.js
 * asks for the tray's upload ids with a "chat:compose" event and lets this module decorate each message
 * with a "chat:render-message" event, both dispatched synchronously on the room element. Names come from
 * users and are only ever set as text; URLs come from the server (short-lived signed links). */
(function () {
  "use strict";
  const Chat = window.Chat;
  const { api, h } = Chat;
  const root = document.querySelector("[data-room]");
  if (!root) return;

  const slug = root.dataset.room;
  const el = {
    form: root.querySelector("[data-send]"),
    picker: root.querySelector("[data-upload-input]"),
    button: root.querySelector("[data-upload-button]"),
    tray: root.querySelector("[data-upload-tray]"),
    drop: root.querySelector("[data-messages]"),
    error: root.querySelector("[data-send-error]"),
  };
  const ready = []; // uploads done, waiting for the next message: {id, name, size, type, item}
  let uploading = 0;

  function humanSize(bytes) {
    const units = ["bytes", "kB", "MB", "GB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = false;
  }

  // --- Uploading ------------------------------------------------------------------------------------------

  /** POST one file with XMLHttpRequest (fetch reports no upload progress); resolves to the upload's JSON. */
  async function send(file, progress) {
    const token = await Chat.accessToken();
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${Chat.API_ORIGIN}/api/rooms/${encodeURIComponent(slug)}/uploads/`);
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) progress.value = event.loaded / event.total;
      });
      xhr.addEventListener("load", () => {
        if (xhr.status === 201) resolve(xhr.response);
        else reject(new Error((xhr.response && xhr.response.detail) || `upload refused (${xhr.status})`));
      });
      xhr.addEventListener("error", () => reject(new Error("the upload failed (network)")));
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });
  }

  async function upload(file) {
    const progress = h("progress", { max: 1, value: 0, "aria-label": `Uploading ${file.name}` });
    const remove = h("button", { type: "button", class: "link", "aria-label": `Remove ${file.name}` }, "×");
    const item = h("li", { class: "upload pending", "data-upload-name": file.name },
      h("span", { class: "name" }, file.name), h("span", { class: "size" }, humanSize(file.size)), progress, remove);
    el.tray.append(item);
    el.tray.hidden = false;
    uploading += 1;
    try {
      const info = await send(file, progress);
      const entry = { ...info, item };
      ready.push(entry);
      item.classList.replace("pending", "done");
      item.dataset.uploadId = info.id;
      progress.value = 1;
      remove.addEventListener("click", () => {
        ready.splice(ready.indexOf(entry), 1); // never attached: the server expires it after a day
        item.remove();
        el.tray.hidden = !el.tray.children.length;
      });
    } catch (error) {
      item.remove();
      el.tray.hidden = !el.tray.children.length;
      showError(`${file.name} was not uploaded: ${error.message}`);
    } finally {
      uploading -= 1;
    }
  }

  function uploadAll(files) {
    el.error.hidden = true;
    for (const file of files) upload(file);
  }

  el.button.addEventListener("click", () => el.picker.click());
  el.picker.addEventListener("change", () => {
    uploadAll([...el.picker.files]);
    el.picker.value = "";
  });
  for (const target of [el.drop, el.form]) {
    target.addEventListener("dragover", (event) => {
      if (![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      root.classList.add("dropping");
    });
    target.addEventListener("dragleave", () => root.classList.remove("dropping"));
    target.addEventListener("drop", (event) => {
      if (!event.dataTransfer.files.length) return;
      event.preventDefault();
      root.classList.remove("dropping");
      uploadAll([...event.dataTransfer.files]);
    });
  }

  // chat.js, when the form is sent: the finished uploads go with this message, and leave the tray.
  root.addEventListener("chat:compose", (event) => {
    if (uploading) event.detail.wait = "wait until the uploads finish";
    if (uploading || !ready.length) return;
    event.detail.attachments.push(...ready.map((entry) => entry.id));
    for (const entry of ready.splice(0)) entry.item.remove();
    el.tray.hidden = true;
  });

  // --- Showing a message's attachments --------------------------------------------------------------------

  /** Fresh signed URLs (the ones in a message live a few minutes). */
  async function fresh(attachment) {
    return api(`/api/attachments/${encodeURIComponent(attachment.id)}/`);
  }

  function openImage(attachment) {
    fresh(attachment).then((info) => {
      const close = h("button", { type: "button", class: "lightbox-close", "aria-label": "Close" }, "×");
      const box = h("div", { class: "lightbox", role: "dialog", "aria-label": info.name },
        h("img", { src: info.url, alt: info.name }), close);
      const dismiss = () => box.remove();
      box.addEventListener("click", dismiss);
      document.addEventListener("keydown", (event) => event.key === "Escape" && dismiss(), { once: true });
      document.body.append(box);
      close.focus();
    }).catch((error) => showError(`Could not open ${attachment.name}: ${error.message}`));
  }

  function download(attachment) {
    fresh(attachment).then((info) => window.location.assign(info.url))
      .catch((error) => showError(`Could not download ${attachment.name}: ${error.message}`));
  }

  function attachmentNode(attachment) {
    if (attachment.thumbnail_url) {
      const link = h("a", { href: attachment.url, class: "attachment image", title: attachment.name },
        h("img", { src: attachment.thumbnail_url, alt: attachment.name, loading: "lazy" }));
      link.addEventListener("click", (event) => {
        event.preventDefault();
        openImage(attachment);
      });
      return link;
    }
    const card = h("a", { href: attachment.url, class: "attachment file", download: attachment.name },
      h("span", { class: "name" }, attachment.name), h("span", { class: "size" }, humanSize(attachment.size)));
    card.addEventListener("click", (event) => {
      event.preventDefault();
      download(attachment);
    });
    return card;
  }

  root.addEventListener("chat:render-message", (event) => {
    const { item, message } = event.detail;
    const attachments = Array.isArray(message.attachments) ? message.attachments : [];
    if (!attachments.length) return;
    item.append(h("div", { class: "attachments" }, attachments.map(attachmentNode)));
  });
})();
