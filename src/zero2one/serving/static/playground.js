// The zero2one playground: try the served model from a browser.
//
// Plain JavaScript, no build step. The page asks the server what to show
// (GET playground/config, behind the API key) and builds one widget: a form, an upload, a
// streamed chat, an image prompt or a JSON editor. Every text that comes from the model or the
// server is set with textContent, never parsed as HTML. The API key, when the server needs one,
// lives in this tab's sessionStorage only. URLs are relative, so the page also works behind a
// path prefix (an ingress that serves the model under /some/path/).

const KEY = "zero2one.apiKey";

const STRINGS = {
  en: {
    forget: "Forget the API key", keyLabel: "API key", useKey: "Use this key",
    keyHint: "Kept in this browser tab only, and sent to this server alone.",
    keyNeeded: "This server needs an API key.", keyRefused: "That API key was refused; try again.",
    offline: "The server did not answer.", predict: "Predict", classify: "Classify",
    send: "Send", stop: "Stop", clear: "New conversation", generate: "Generate",
    good: "Good answer", bad: "Bad answer", thanks: "Thanks, recorded.",
    number: "must be a number", missing: "(empty: missing)", probabilities: "Probabilities",
    drop: "Drop images here or choose files", tooBig: "is over the server's limit of",
    noFiles: "Choose at least one image.", chatPlaceholder: "Write a message… (Enter sends)",
    completionPlaceholder: "Text to continue… (Enter sends)", system: "System prompt",
    maxTokens: "Max tokens", temperature: "Temperature", settings: "Settings",
    prompt: "Prompt", negative: "Negative prompt", guidance: "Guidance scale", steps: "Steps",
    seed: "Seed (empty: random)", images: "Images", examples: "Examples",
    withheld: "withheld by moderation", stopped: "(stopped)", request: "Request body (JSON)",
    notJson: "The request body is not valid JSON", response: "Response", nothing:
      "This model has no playground; use its HTTP API.", version: "version", task: "task",
    moderated: "moderated", feedbackOn: "feedback on",
    schema: "Answer as JSON under this schema (optional)",
    tools: "Tools: OpenAI's JSON list (optional)", toolChoice: "Tool choice",
    resultOf: "Result of", sendResults: "Send the results", badSetting: "is not valid JSON",
    attach: "Attach an image",
  },
  zh: {
    forget: "清除 API 密钥", keyLabel: "API 密钥", useKey: "使用此密钥",
    keyHint: "仅保存在当前浏览器标签页中，只发送给本服务器。",
    keyNeeded: "此服务器需要 API 密钥。", keyRefused: "API 密钥被拒绝，请重试。",
    offline: "服务器没有响应。", predict: "预测", classify: "分类",
    send: "发送", stop: "停止", clear: "新对话", generate: "生成",
    good: "回答好", bad: "回答不好", thanks: "谢谢，已记录。",
    number: "必须是数字", missing: "（留空：缺失值）", probabilities: "概率",
    drop: "把图片拖到这里，或选择文件", tooBig: "超过服务器的上限",
    noFiles: "请至少选择一张图片。", chatPlaceholder: "输入消息…（回车发送）",
    completionPlaceholder: "输入要续写的文本…（回车发送）", system: "系统提示词",
    maxTokens: "最大 token 数", temperature: "温度", settings: "设置",
    prompt: "提示词", negative: "反向提示词", guidance: "引导系数", steps: "步数",
    seed: "随机种子（留空：随机）", images: "图片数", examples: "示例",
    withheld: "已被内容审核拦截", stopped: "（已停止）", request: "请求体（JSON）",
    notJson: "请求体不是有效的 JSON", response: "响应", nothing:
      "此模型没有试用页面，请使用它的 HTTP API。", version: "版本", task: "任务",
    moderated: "已开启审核", feedbackOn: "已开启反馈",
    schema: "按此 JSON Schema 以 JSON 回答（可选）",
    tools: "工具：OpenAI 格式的 JSON 列表（可选）", toolChoice: "工具选择",
    resultOf: "调用结果：", sendResults: "发送结果", badSetting: "不是有效的 JSON",
    attach: "附加图片",
  },
};
const T = (navigator.language || "en").toLowerCase().startsWith("zh") ? STRINGS.zh : STRINGS.en;

const $ = (selector, root = document) => root.querySelector(selector);

// el("p", {class: "x", onclick: f}, "text", child): attributes, listeners and children; strings
// become text nodes
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// a node's children replaced by these, leaving out null and undefined (which replaceChildren
// would show as the text "null")
function fill(node, ...children) {
  node.replaceChildren(...children.filter((child) => child !== null && child !== undefined));
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// fetch a route of this server (relative, for path prefixes) with the API key; errors become
// ApiError with the server's one-line message
async function api(route, init = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = new Headers(init.headers || {});
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(route.replace(/^\/+/, ""), { ...init, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, T.offline);
  }
  if (response.status === 401) {
    askKey(key ? T.keyRefused : T.keyNeeded);
    throw new ApiError(401, key ? T.keyRefused : T.keyNeeded);
  }
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  return response;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    const detail = body.error?.message ?? body.detail;
    if (detail) return typeof detail === "string" ? detail : JSON.stringify(detail);
  } catch { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

const postJson = (route, body, init = {}) => api(route, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  ...init,
});

// the server-sent events of a streamed completion, parsed
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

function askKey(why) {
  fill($("#widget"));
  $("#forget").hidden = true;
  $("#key-why").textContent = why;
  $("#key").hidden = false;
  $("#key-input").focus();
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

function errorLine(message) {
  return el("p", { class: "error", role: "alert", text: message });
}

async function busy(button, work) {
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

// "label  [meter]  12.3%" rows, highest first
function bars(pairs) {
  const grid = el("div", { class: "bars" });
  for (const [label, p] of [...pairs].sort((a, b) => b[1] - a[1])) {
    grid.append(el("span", { class: "label", text: label }),
      el("meter", { min: 0, max: 1, value: p, "aria-label": label }),
      el("span", { class: "p", text: percent(p) }));
  }
  return grid;
}

// thumbs up/down for one answer, when the server records feedback
function thumbs(id, config) {
  if (!config.feedback || !id) return null;
  const box = el("div", { class: "feedback", "data-id": id });
  const send = async (rating) => {
    const buttons = [...box.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    box.querySelector(".error")?.remove();
    try {
      await postJson("/v1/feedback", { id, rating });
      box.dataset.sent = rating;
      box.append(el("span", { class: "thanks", text: T.thanks }));
    } catch (error) {
      buttons.forEach((b) => { b.disabled = false; });
      box.append(el("span", { class: "error", text: error.message }));
    }
  };
  box.append(
    el("button", { type: "button", class: "up", title: T.good, "aria-label": T.good,
      onclick: () => send("up") }, thumb()),
    el("button", { type: "button", class: "down", title: T.bad, "aria-label": T.bad,
      onclick: () => send("down") }, thumb()));
  return box;
}

// a thumb drawn as SVG (emoji need a font the machine may lack); CSS turns it down
function thumb() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17"
    + "-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 "
    + "1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z");
  svg.append(path);
  return svg;
}

function field(id, label, input) {
  return el("div", {}, el("label", { for: id, text: label }), input);
}

// ---- widgets ------------------------------------------------------------------------------

// a field per column, posted as one record to /predict
function form(widget, config) {
  const inputs = [];
  const fields = el("div", { class: "fields" });
  widget.fields.forEach((spec, i) => {
    const id = `field-${i}`;
    let input;
    if (spec.options?.length) {
      input = el("select", { id, name: spec.name });
      input.append(el("option", { value: "", text: T.missing }));
      for (const option of spec.options) input.append(el("option", { value: option, text: option }));
      input.value = spec.options[0];
    } else {
      const value = typeof spec.value === "number" ? Number(spec.value.toPrecision(4)) : "";
      input = el("input", { id, name: spec.name, type: "text", value,
        inputmode: spec.type === "number" ? "decimal" : "text", autocomplete: "off" });
    }
    inputs.push([spec, input]);
    // a readable label ("monthly_charges" -> "Monthly charges"); the column's own name beside
    // it when they differ, since that is what the API takes
    const label = el("label", { for: id, text: spec.label || spec.name, title: spec.name });
    if (spec.label && spec.label !== spec.name) {
      label.append(" ", el("code", { class: "column", text: spec.name }));
    }
    fields.append(el("div", {}, label, input));
  });
  const button = el("button", { type: "submit", text: T.predict });
  const result = el("div", { class: "result" });
  const root = el("form", { class: "panel", id: "predict-form" }, fields,
    el("div", { class: "actions" }, button), result);
  root.addEventListener("submit", (event) => {
    event.preventDefault();
    const record = {};
    for (const [spec, input] of inputs) {
      const raw = input.value.trim();
      if (raw === "") record[spec.name] = null;
      else if (spec.type === "number") {
        const number = Number(raw);
        if (!Number.isFinite(number)) {
          fill(result, errorLine(`${spec.name} ${T.number}: ${raw}`));
          input.focus();
          return;
        }
        record[spec.name] = number;
      } else record[spec.name] = raw;
    }
    fill(result);
    busy(button, async () => {
      try {
        const response = await postJson(widget.route,
          { records: [record], probabilities: Boolean(widget.probabilities) });
        const answer = await response.json();
        const shown = answer.labels ? answer.labels[0] : answer.result[0];
        const value = typeof shown === "number" ? Number(shown.toPrecision(6)) : shown;
        fill(result,
          el("div", { class: "answer", "data-testid": "answer" },
            widget.target ? `${widget.target} = ` : "", String(value)),
          answer.probabilities ? bars(Object.entries(answer.probabilities[0])) : null,
          thumbs(answer.request_id, config));
      } catch (error) {
        if (error.status !== 401) fill(result, errorLine(error.message));
      }
    });
  });
  return root;
}

// image files posted as a multipart form; the top classes of each
function upload(widget, config) {
  const picker = el("input", { type: "file", id: "files", accept: widget.accept,
    multiple: widget.max_files > 1 });
  const zone = el("label", { class: "drop", for: "files" }, T.drop);
  const previews = el("div", { class: "images" });
  const button = el("button", { type: "submit", text: T.classify });
  const result = el("div", { class: "result" });
  let files = [];
  const choose = (list) => {
    files = [...list].slice(0, widget.max_files);
    fill(previews, ...files.map((file) => el("figure", {},
      el("img", { src: URL.createObjectURL(file), alt: file.name }),
      el("figcaption", { text: file.name }))));
    fill(result);
  };
  picker.addEventListener("change", () => choose(picker.files));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    choose(event.dataTransfer.files);
  });
  const root = el("form", { class: "panel", id: "upload-form" }, zone, picker, previews,
    el("div", { class: "actions" }, button), result);
  root.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!files.length) {
      fill(result, errorLine(T.noFiles));
      return;
    }
    const big = files.find((file) => file.size > widget.max_bytes);
    if (big) {
      fill(result, errorLine(`${big.name} ${T.tooBig} ${widget.max_bytes} bytes`));
      return;
    }
    const classify = async (batch) => {
      const body = new FormData();
      for (const file of batch) body.append(widget.field, file);
      body.append("top_k", String(widget.top_k));
      return (await api(widget.route, { method: "POST", body })).json();
    };
    const shown = (file, top) => el("div", { class: "panel" },
      el("div", { class: "answer", "data-testid": "answer" }, `${file.name}: ${top[0].label}`),
      bars(top.map((t) => [t.label, t.probability])));
    fill(result);
    busy(button, async () => {
      try {
        const answer = await classify(files);
        fill(result, ...answer.top_k.map((top, i) => shown(files[i], top)),
          thumbs(answer.request_id, config));
      } catch (error) {
        if (error.status === 401) return;
        if (files.length < 2 || error.status < 400 || error.status >= 500) {
          fill(result, errorLine(error.message));
          return;
        }
        // the server refuses a batch with one unreadable file: each file on its own, so that
        // the readable ones are answered and the others say why not
        const panels = [];
        for (const file of files) {
          try {
            const one = await classify([file]);
            panels.push(shown(file, one.top_k[0]), thumbs(one.request_id, config));
          } catch (again) {
            if (again.status === 401) return;
            panels.push(errorLine(`${file.name}: ${again.message}`));
          }
        }
        fill(result, ...panels);
      }
    });
  });
  return root;
}

// an answer that is a JSON document, shown indented; anything else: null
function asJson(text) {
  const trimmed = text.trim();
  if (!/^[[{]/.test(trimmed)) return null;
  try {
    return el("pre", { class: "json", text: JSON.stringify(JSON.parse(trimmed), null, 2) });
  } catch {
    return null;
  }
}

// the model's tool calls: a function's name and its arguments, indented
function showCalls(calls) {
  return el("div", { class: "calls" }, ...calls.map((call) => {
    let args = call.function.arguments;
    try { args = JSON.stringify(JSON.parse(args), null, 2); } catch { /* shown as sent */ }
    return el("div", { class: "call", "data-testid": "call" },
      el("code", { class: "name", text: `${call.function.name}()` }),
      el("pre", { class: "arguments", text: args }));
  }));
}

// a JSON setting of the chat: its value, or undefined when empty
function jsonSetting(input, label) {
  if (!input.value.trim()) return undefined;
  try {
    return JSON.parse(input.value);
  } catch {
    throw new ApiError(400, `${label} ${T.badSetting}`);
  }
}

// a streamed chat (or a completion box for a model without a chat template); with a schema the
// answer is JSON under it, with tools the model may call them and a person answers each call
function chat(widget, config) {
  const history = [];
  const log = el("div", { class: "log", role: "log", "aria-live": "polite" });
  const text = el("textarea", { id: "message", rows: 2,
    placeholder: widget.chat ? T.chatPlaceholder : T.completionPlaceholder });
  const sendButton = el("button", { type: "submit", text: T.send });
  const stopButton = el("button", { type: "button", class: "quiet", text: T.stop, hidden: true });
  const clearButton = el("button", { type: "button", class: "quiet", text: T.clear });
  const system = el("textarea", { id: "system", rows: 2 });
  const maxTokens = el("input", { id: "max-tokens", type: "number", min: 1, max: 8192,
    value: widget.max_tokens });
  const temperature = el("input", { id: "temperature", type: "number", min: 0, max: 2,
    step: 0.1, value: widget.temperature });
  const schema = el("textarea", { id: "schema", rows: 3, spellcheck: "false",
    placeholder: '{"type": "object", "properties": {...}}' });
  const tools = el("textarea", { id: "tools", rows: 3, spellcheck: "false",
    placeholder: '[{"type": "function", "function": {"name": ..., "parameters": {...}}}]' });
  const toolChoice = el("select", { id: "tool-choice" },
    ...["auto", "required", "none"].map((choice) => el("option", { value: choice, text: choice })));
  // a model that reads images (widget.images: how many a conversation may hold) takes one with
  // a message; one that answers in its own way only (widget.structured false) has no schema,
  // tools or system prompt to set
  const structured = widget.structured !== false;
  const attach = widget.images ? el("input", { id: "attach", type: "file",
    accept: "image/png,image/jpeg,image/gif,image/webp,image/bmp", "aria-label": T.attach })
    : null;
  const settings = el("details", {}, el("summary", { text: T.settings }),
    el("div", { class: "fields" },
      widget.chat && structured ? field("system", T.system, system) : null,
      field("max-tokens", T.maxTokens, maxTokens),
      field("temperature", T.temperature, temperature),
      structured ? field("schema", T.schema, schema) : null,
      widget.chat && structured ? field("tools", T.tools, tools) : null,
      widget.chat && structured ? field("tool-choice", T.toolChoice, toolChoice) : null));
  let controller = null;
  const root = el("form", { class: "panel", id: "chat-form" }, log,
    el("div", { class: "row" }, text, sendButton, stopButton),
    attach ? field("attach", T.attach, attach) : null,
    el("div", { class: "actions" }, clearButton), settings);

  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      root.requestSubmit();
    }
  });
  stopButton.addEventListener("click", () => controller?.abort());
  clearButton.addEventListener("click", () => {
    controller?.abort();
    history.length = 0;
    fill(log);
  });

  // a person answers the calls; the results go back as role "tool" messages
  function results(calls, bubble) {
    const inputs = calls.map((call, index) => el("textarea", { id: `result-${index}`, rows: 1,
      class: "result-of" }));
    const send = el("button", { type: "button", text: T.sendResults });
    const box = el("div", { class: "results" }, ...calls.map((call, index) =>
      field(`result-${index}`, `${T.resultOf} ${call.function.name}()`, inputs[index])), send);
    send.addEventListener("click", () => {
      if (controller) return;
      inputs.forEach((input) => { input.disabled = true; });
      send.remove();
      ask(calls.map((call, index) => ({ role: "tool", tool_call_id: call.id,
        content: inputs[index].value })));
    });
    bubble.append(box);
  }

  // one turn of the model after the messages ``added`` (a person's message, or tool results)
  async function ask(added) {
    const words = el("span", { class: "text" });
    const bubble = el("div", { class: "bubble assistant streaming", "data-testid": "reply" }, words);
    log.append(bubble);
    controller = new AbortController();
    sendButton.disabled = true;
    stopButton.hidden = false;
    let id = null;
    let reply = "";
    const calls = [];
    try {
      const body = { stream: true, max_tokens: Number(maxTokens.value) || widget.max_tokens,
        temperature: temperature.value === "" ? widget.temperature : Number(temperature.value) };
      const answerSchema = jsonSetting(schema, T.schema);
      if (answerSchema !== undefined) {
        body.response_format = { type: "json_schema",
          json_schema: { name: "answer", schema: answerSchema } };
      }
      const declared = widget.chat ? jsonSetting(tools, T.tools) : undefined;
      if (declared !== undefined) Object.assign(body, { tools: declared, tool_choice: toolChoice.value });
      if (widget.chat) {
        body.messages = [...history, ...added];
        if (system.value.trim()) body.messages.unshift({ role: "system", content: system.value.trim() });
      } else {
        body.prompt = added[0].content;
      }
      const response = await postJson(widget.route, body, { signal: controller.signal });
      for await (const chunk of events(response)) {
        if (chunk.error) throw new ApiError(400, chunk.error.message);
        id = chunk.id ?? id;
        const choice = chunk.choices?.[0];
        const piece = widget.chat ? choice?.delta?.content : choice?.text;
        if (piece) {
          reply += piece;
          words.textContent = reply;
          log.scrollTop = log.scrollHeight;
        }
        for (const part of choice?.delta?.tool_calls || []) {  // OpenAI's deltas per call
          const call = calls[part.index] ??= { id: "", type: "function",
            function: { name: "", arguments: "" } };
          call.id += part.id || "";
          call.function.name += part.function?.name || "";
          call.function.arguments += part.function?.arguments || "";
        }
      }
      if (calls.length) {
        words.replaceWith(showCalls(calls));
        history.push(...added, { role: "assistant", content: null, tool_calls: calls });
        results(calls, bubble);
      } else {
        const shown = asJson(reply);
        if (shown) words.replaceWith(shown);
        if (widget.chat) history.push(...added, { role: "assistant", content: reply });
      }
      const rate = thumbs(id, config);
      if (rate) bubble.append(rate);
    } catch (error) {
      if (error.name === "AbortError") bubble.append(el("span", { class: "hint", text: ` ${T.stopped}` }));
      else if (error.status !== 401) bubble.append(errorLine(error.message));
    } finally {
      bubble.classList.remove("streaming");
      bubble.dataset.done = "true";
      controller = null;
      sendButton.disabled = false;
      stopButton.hidden = true;
      text.focus();
    }
  }

  root.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = text.value.trim();
    if (!message || controller) return;
    text.value = "";
    const file = attach?.files?.[0];
    const bubble = el("div", { class: "bubble user", text: message });
    log.append(bubble);
    if (!file) {
      ask([{ role: "user", content: message }]);
      return;
    }
    attach.value = "";
    const url = await dataUrl(file);
    bubble.prepend(el("img", { class: "attached", src: url, alt: file.name }));
    ask([{ role: "user", content: [{ type: "image_url", image_url: { url } },
      { type: "text", text: message }] }]);
  });
  return root;
}

// a file as a data: URL (base64), as OpenAI's image_url parts carry an image
function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// a prompt with the diffusion options; the images come back as base64 PNGs
function prompt(widget, config) {
  const text = el("textarea", { id: "prompt", rows: 2, required: true });
  const negative = el("input", { id: "negative", type: "text" });
  const guidance = el("input", { id: "guidance", type: "number", min: 0, max: 50, step: 0.5,
    value: widget.guidance_scale });
  const steps = el("input", { id: "steps", type: "number", min: 1, max: widget.max_steps,
    value: widget.steps });
  const seed = el("input", { id: "seed", type: "number", min: 0, step: 1 });
  const count = el("input", { id: "count", type: "number", min: 1, max: widget.max_images,
    value: 1 });
  const chips = el("div", { class: "chips" }, ...(widget.examples || []).map((example) =>
    el("button", { type: "button", text: example, onclick: () => { text.value = example; } })));
  const button = el("button", { type: "submit", text: T.generate });
  const result = el("div", { class: "result" });
  const root = el("form", { class: "panel", id: "prompt-form" },
    field("prompt", T.prompt, text),
    widget.examples?.length ? el("div", {}, el("span", { class: "hint", text: T.examples }), chips) : null,
    el("div", { class: "fields" },
      field("negative", T.negative, negative), field("guidance", T.guidance, guidance),
      field("steps", T.steps, steps), field("seed", T.seed, seed), field("count", T.images, count)),
    el("div", { class: "actions" }, button), result);
  root.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { prompt: text.value.trim(), n: Number(count.value) || 1,
      response_format: "b64_json" };
    if (negative.value.trim()) body.negative_prompt = negative.value.trim();
    if (guidance.value !== "") body.guidance_scale = Number(guidance.value);
    if (steps.value !== "") body.steps = Number(steps.value);
    if (seed.value !== "") body.seed = Number(seed.value);
    fill(result);
    busy(button, async () => {
      try {
        const answer = await (await postJson(widget.route, body)).json();
        fill(result, el("div", { class: "images" }, ...answer.data.map((image, i) =>
          el("figure", {},
            image.b64_json
              ? el("img", { src: `data:image/png;base64,${image.b64_json}`,
                alt: `${body.prompt} (${i + 1})`, "data-testid": "image" })
              : el("p", { class: "error", text: T.withheld }),
            el("figcaption", { text: `seed ${image.seed}` })))),
        thumbs(answer.id, config) ?? "");
      } catch (error) {
        if (error.status !== 401) fill(result, errorLine(error.message));
      }
    });
  });
  return root;
}

// a request body edited by hand, for models that declare no widget of their own
function json(widget, config) {
  const body = el("textarea", { id: "body", rows: 8, spellcheck: "false" });
  body.value = JSON.stringify(widget.example ?? {}, null, 2);
  const button = el("button", { type: "submit", text: T.send });
  const result = el("div", { class: "result" });
  const root = el("form", { class: "panel", id: "json-form" }, field("body", T.request, body),
    widget.schema ? el("details", {}, el("summary", { text: "schema" }),
      el("pre", { text: JSON.stringify(widget.schema, null, 2) })) : null,
    el("div", { class: "actions" }, button), result);
  root.addEventListener("submit", (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(body.value);
    } catch (error) {
      fill(result, errorLine(`${T.notJson}: ${error.message}`));
      return;
    }
    fill(result);
    busy(button, async () => {
      try {
        const answer = await (await postJson(widget.route, parsed)).json();
        fill(result, el("h3", { text: T.response }),
          el("pre", { "data-testid": "answer", text: JSON.stringify(answer, null, 2) }),
          thumbs(answer.request_id ?? answer.id, config) ?? "");
      } catch (error) {
        if (error.status !== 401) fill(result, errorLine(error.message));
      }
    });
  });
  return root;
}

function none() {
  return el("p", { class: "panel", text: T.nothing });
}

const WIDGETS = { form, upload, chat, prompt, json, none };

// ---- start --------------------------------------------------------------------------------

async function start() {
  showError(null);
  let config;
  try {
    config = await (await api("/playground/config")).json();
  } catch (error) {
    if (error.status !== 401) showError(error.message);
    return;
  }
  $("#key").hidden = true;
  $("#forget").hidden = !sessionStorage.getItem(KEY);
  const { model } = config;
  const facts = [model.name, model.version ? `${T.version} ${model.version}` : null,
    `${T.task} ${model.task}`, config.moderation ? T.moderated : null,
    config.feedback ? T.feedbackOn : null];
  $("#model").textContent = facts.filter(Boolean).join(" · ");
  document.title = `${model.name} · zero2one playground`;
  const build = WIDGETS[config.widget.kind] ?? none;
  fill($("#widget"), build(config.widget, config));
  document.body.dataset.ready = config.widget.kind;
}

function translate() {
  document.documentElement.lang = T === STRINGS.zh ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = T[node.dataset.t];
}

$("#key").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#key-input").value.trim());
  $("#key-input").value = "";
  start();
});
$("#forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  askKey(T.keyNeeded);
});
translate();
start();
