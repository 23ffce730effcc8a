// Passkey ceremonies of the hosted pages. WebAuthn lives in the browser's JavaScript API, so
// these forms are the one place where the pages need a script: each is an ordinary form that
// posts to the service, and this script fills its `credential` field with the authenticator's
// answer before it goes. A form marked `data-passkey`:
//
// - `register`: its `data-options` hold the options for `navigator.credentials.create` (the
//   page began the ceremony);
// - `sign-in`: the options come from `POST /v1/auth/sign-in/passkey/start`;
// - `second-factor`: from `POST /v1/auth/sign-in/second-factor/passkey/start` with the
//   form's `challenge`.
//
// Binary fields travel as base64url, as the service's JSON API has them.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) {
      base64 += "=";
    }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (credential) {
      return Object.assign({}, credential, { id: toBytes(credential.id) });
    });
  }

  function creation(options) {
    var publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = toBytes(publicKey.challenge);
    publicKey.user = Object.assign({}, publicKey.user, { id: toBytes(publicKey.user.id) });
    publicKey.excludeCredentials = withIds(publicKey.excludeCredentials);
    return { publicKey: publicKey };
  }

  function request(options) {
    var publicKey = Object.assign({}, options.publicKey);
    publicKey.challenge = toBytes(publicKey.challenge);
    publicKey.allowCredentials = withIds(publicKey.allowCredentials);
    return { publicKey: publicKey };
  }

  function answer(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: { clientDataJSON: toText(response.clientDataJSON) },
      clientExtensionResults: {},
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
    }
    if (response.authenticatorData) {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      if (response.userHandle) {
        json.response.userHandle = toText(response.userHandle);
      }
    }
    return json;
  }

  function start(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    }).then(function (reply) {
      return reply.json().then(function (json) {
        if (!reply.ok) {
          throw new Error(json.detail || json.title || "refused");
        }
        return json;
      });
    });
  }

  function ceremony(form) {
    var kind = form.getAttribute("data-passkey");
    if (kind === "register") {
      var options = JSON.parse(form.getAttribute("data-options"));
      return navigator.credentials.create(creation(options));
    }
    var begun =
      kind === "second-factor"
        ? start("/v1/auth/sign-in/second-factor/passkey/start", {
            challenge: form.elements.challenge.value,
          })
        : start("/v1/auth/sign-in/passkey/start", {});
    return begun.then(function (started) {
      form.elements.ceremony.value = started.ceremony;
      return navigator.credentials.get(request(started.options));
    });
  }

  function fail(form, error) {
    var shown = form.querySelector("[data-passkey-error]");
    if (shown) {
      shown.textContent = shown.getAttribute("data-message") + " (" + error.message + ")";
      shown.hidden = false;
    }
  }

  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.elements.credential.value) {
        return;
      }
      event.preventDefault();
      if (!window.PublicKeyCredential) {
        fail(form, new Error("WebAuthn"));
        return;
      }
      ceremony(form)
        .then(function (credential) {
          form.elements.credential.value = JSON.stringify(answer(credential));
          form.submit();
        })
        .catch(function (error) {
          fail(form, error);
        });
    });
  });
})();
