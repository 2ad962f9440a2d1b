// The demo page: pick a photo and garments, start a fitting, follow it over the event stream.
// Session auth: the cookie goes with every request; writes carry the CSRF token.
"use strict";

(function () {
  // In step order. A dress replaces the top and the bottom (the API answers CATEGORY_CONFLICT).
  const CATEGORIES = [["top", "상의 top"], ["dress", "원피스 dress"], ["bottom", "하의 bottom"],
                      ["outer", "아우터 outer"], ["shoes", "신발 shoes"]];
  const DRESS_REPLACES = ["top", "bottom"];
  const STATES = {pending: "대기 pending", processing: "진행 중 processing", completed: "완료 completed",
                  failed: "실패 failed"};
  const JOB_STATES = {processing: "진행 중 · processing", completed: "완료 · completed",
                      failed: "실패 · failed", timeout: "시간 초과 · timeout", canceled: "취소됨 · canceled"};
  const TERMINAL = ["completed", "failed", "timeout", "canceled"];
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let stream = null;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // A small rendition (/thumbs/<name>, same access rules as the image) of an image URL the API
  // gave: the stored name is the URL path's last two segments ("items/x.png"), for a local
  // /media/ URL and for a bucket's pre-signed URL alike.
  function thumb(url) {
    const name = new URL(url, location.href).pathname.split("/").slice(-2).join("/");
    return new URL(`/thumbs/${name}`, location.href).href;
  }

  async function api(method, url, body) {
    const options = {method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken;
    if (body instanceof FormData) options.body = body;
    else if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { /* not JSON */ }
    return {ok: response.ok, status: response.status, data};
  }

  function showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = !text;
  }

  function describe(error, status) {
    if (error && error.error) return `${error.error.message} (${error.error.code})`;
    return `요청이 실패했습니다 · request failed (HTTP ${status})`;
  }

  // --- photos ---------------------------------------------------------------------------
  function photoChoice(photo, checked) {
    const input = el("input", {type: "radio", name: "photo", value: photo.url, "data-testid": "photo-choice"});
    input.checked = checked;
    return el("label", {class: "choice"}, [el("img", {src: thumb(photo.url), alt: `photo ${photo.id}`}), input]);
  }

  async function loadPhotos(selectUrl) {
    const result = await api("GET", "/api/users/me/photos");
    const box = $("photos");
    box.replaceChildren();
    if (!result.ok) { $("photo-status").textContent = describe(result.data, result.status); return; }
    const photos = Array.isArray(result.data) ? result.data : (result.data.results || []);
    photos.forEach((photo, index) => box.append(photoChoice(photo, selectUrl ? photo.url === selectUrl : index === 0)));
    if (!photos.length) $("photo-status").textContent = "사진을 올려 주세요 · upload a photo first";
  }

  async function upload(file) {
    const form = new FormData();
    form.append("image", file);
    $("photo-status").textContent = "올리는 중… · uploading";
    const result = await api("POST", "/api/users/me/photos", form);
    if (!result.ok) { $("photo-status").textContent = describe(result.data, result.status); return; }
    $("photo-status").textContent = `올렸습니다 · uploaded (${result.data.width}×${result.data.height})`;
    await loadPhotos(result.data.url);
  }

  // --- catalogue ------------------------------------------------------------------------
  function itemChoice(category, item) {
    const input = el("input", {type: "radio", name: `item-${category}`, value: item ? item.id : "",
                               "data-testid": item ? `item-${item.id}` : `item-${category}-none`});
    if (!item) input.checked = true;
    // Picking a dress clears the top and the bottom, and picking either of them clears the dress.
    if (item) input.addEventListener("change", () => {
      const cleared = category === "dress" ? DRESS_REPLACES : DRESS_REPLACES.includes(category) ? ["dress"] : [];
      for (const other of cleared) document.querySelector(`input[name="item-${other}"][value=""]`).checked = true;
    });
    const picture = item ? el("img", {src: thumb(item.imageUrl), alt: item.name}) : el("span", {class: "none", text: "없음 none"});
    return el("label", {class: "choice"}, [picture, el("span", {text: item ? item.name : "선택 안 함"}), input]);
  }

  async function loadCatalogue() {
    const result = await api("GET", "/api/items");
    const box = $("catalogue");
    if (!result.ok) { box.textContent = describe(result.data, result.status); return; }
    const items = Array.isArray(result.data) ? result.data : (result.data.results || []);
    for (const [category, label] of CATEGORIES) {
      const choices = el("div", {class: "choices"}, [itemChoice(category, null)]);
      items.filter((item) => item.category === category).forEach((item) => choices.append(itemChoice(category, item)));
      box.append(el("div", {class: "category", "data-testid": `category-${category}`}, [el("h3", {text: label}), choices]));
    }
  }

  // --- the job --------------------------------------------------------------------------
  function renderJob(job) {
    $("job-status").textContent = JOB_STATES[job.status] || job.status;
    $("job-status").dataset.status = job.status;
    const body = $("steps").querySelector("tbody");
    body.replaceChildren();
    for (const step of job.steps) {
      const image = step.imageUrl ? el("img", {src: thumb(step.imageUrl), alt: `${step.category} result`,
                                               "data-testid": `step-${step.category}-image`}) : "";
      body.append(el("tr", {"data-testid": `step-${step.category}`, dataset: {status: step.status}}, [
        el("td", {text: step.category}),
        el("td", {class: `state-${step.status}`, text: STATES[step.status] || step.status,
                  "data-testid": `step-${step.category}-status`}),
        el("td", {}, [image]),
      ]));
    }
    $("steps").hidden = false;
    if (job.status === "completed") {
      $("result-image").src = job.resultImageUrl;
      $("llm-message").textContent = job.llmMessage || "(추천 메시지 없음 · no message)";
      // Disclosure: say what made the image (aiGenerated, engine).
      $("disclosure").textContent = job.aiGenerated
        ? `AI 생성 이미지 · AI-generated (${job.engine.name}, ${job.engine.model})`
        : `미리보기 합성 · preview composite (${job.engine.name}, ${job.engine.model})`;
      $("disclosure").dataset.aiGenerated = String(job.aiGenerated);
      $("result").hidden = false;
      renderCandidates(job.candidates || []);
      showRating(job);
    }
    if (job.status === "failed" || job.status === "timeout") {
      const where = job.failedStep ? `${job.failedStep} 단계에서 실패 · failed at ${job.failedStep}` : "실패 · failed";
      showError(job.error ? `${where}: ${job.error.message} (${job.error.code})` : where);
    }
  }

  // The candidates side by side, best first; shown when there is more than one.
  function renderCandidates(candidates) {
    const box = $("candidates");
    box.replaceChildren();
    candidates.forEach((candidate, index) => {
      const score = candidate.score === null ? "–" : candidate.score.toFixed(2);
      const caption = `${index === 0 ? "최선 · best" : `#${index + 1}`} · score ${score}`;
      box.append(el("figure", {class: index === 0 ? "best" : "", "data-testid": `candidate-${index}`}, [
        el("img", {src: thumb(candidate.imageUrl), alt: `candidate ${index + 1}`,
                   "data-testid": `candidate-${index}-image`}),
        el("figcaption", {text: caption}),
      ]));
    });
    box.hidden = candidates.length < 2;
  }

  // --- the rating (stars under the result) -----------------------------------------------
  let ratedJob = null;

  function chooseScore(score) {
    $("rating").dataset.chosen = String(score);
    for (const star of $("rating").querySelectorAll(".star")) {
      star.setAttribute("aria-pressed", String(Number(star.dataset.score) <= score));
    }
    $("rating-save").disabled = !score;
  }

  function showSaved(rating) {
    $("rating").dataset.score = rating ? String(rating.score) : "";
    $("rating-clear").hidden = !rating;
    $("rating-status").textContent = rating ? `평가 저장됨 · saved (${rating.score}/5)` : "";
  }

  function showRating(job) {
    if (ratedJob === job.jobId) return;  // a later event of the same job keeps what is being edited
    ratedJob = job.jobId;
    const rating = job.rating;
    chooseScore(rating ? rating.score : 0);
    for (const box of $("rating").querySelectorAll('input[name="reason"]')) {
      box.checked = Boolean(rating && rating.reasons.includes(box.value));
    }
    $("rating-comment").value = rating ? rating.comment : "";
    showSaved(rating);
    $("rating").hidden = false;
  }

  async function saveRating(event) {
    event.preventDefault();
    const reasons = [...$("rating").querySelectorAll('input[name="reason"]:checked')].map((box) => box.value);
    const body = {score: Number($("rating").dataset.chosen), reasons, comment: $("rating-comment").value};
    const result = await api("PUT", `/api/virtual-fitting/${ratedJob}/rating`, body);
    if (!result.ok) { $("rating-status").textContent = describe(result.data, result.status); return; }
    showSaved(result.data);
  }

  async function clearRating() {
    const result = await api("DELETE", `/api/virtual-fitting/${ratedJob}/rating`);
    if (!result.ok) { $("rating-status").textContent = describe(result.data, result.status); return; }
    chooseScore(0);
    showSaved(null);
    $("rating-status").textContent = "평가 지움 · removed";
  }

  function follow(jobId) {
    if (stream) stream.close();
    stream = new EventSource(`/api/virtual-fitting/${jobId}/events`);
    stream.addEventListener("job", (event) => {
      const job = JSON.parse(event.data);
      renderJob(job);
      if (TERMINAL.includes(job.status)) { stream.close(); $("start").disabled = false; }
    });
    // On a dropped connection EventSource reconnects by itself; the first event it gets is
    // the job's current state, so nothing is missed.
  }

  async function start() {
    showError("");
    $("result").hidden = true;
    $("candidates").hidden = true;
    $("rating").hidden = true;
    ratedJob = null;
    const photo = document.querySelector('input[name="photo"]:checked');
    const items = [];
    for (const [category] of CATEGORIES) {
      const chosen = document.querySelector(`input[name="item-${category}"]:checked`);
      if (chosen && chosen.value) items.push({itemId: Number(chosen.value), category});
    }
    $("start").disabled = true;
    const numSamples = Number($("samples").value);
    const result = await api("POST", "/api/virtual-fitting",
                             {userPhotoUrl: photo ? photo.value : null, items, numSamples});
    if (!result.ok) {
      showError(describe(result.data, result.status));
      $("start").disabled = false;
      return;
    }
    $("job-status").textContent = JOB_STATES.processing;
    $("job-status").dataset.jobId = result.data.jobId;
    follow(result.data.jobId);
  }

  $("photo-input").addEventListener("change", (event) => {
    if (event.target.files.length) upload(event.target.files[0]);
  });
  $("start").addEventListener("click", start);
  for (const star of $("rating").querySelectorAll(".star")) {
    star.addEventListener("click", () => chooseScore(Number(star.dataset.score)));
  }
  $("rating").addEventListener("submit", saveRating);
  $("rating-clear").addEventListener("click", clearRating);
  loadPhotos();
  loadCatalogue();
})();
