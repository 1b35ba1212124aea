// The JSON API, with the bearer token when the server asks for one (401 -> a dialog).

export const TOKEN_KEY = "cnnkit-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function askToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(input.value.trim()), { once: true });
    dialog.showModal();
  });
}

export async function api(path, options = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = new Headers(options.headers || {});
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      sessionStorage.setItem(TOKEN_KEY, await askToken());
      continue;
    }
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw new ApiError(response.status, body.error || response.statusText);
    return body;
  }
  throw new ApiError(401, "the token was refused");
}

// Images go as the raw body: no multipart framing to build or parse.
export const postImage = (path, blob) =>
  api(path, { method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" } });
