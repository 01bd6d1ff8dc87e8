// SMART App Launch 2.0 with the SMART JavaScript client (fhirclient): EHR launch (iss + launch),
// standalone launch (iss only, the user picks the patient), authorization code with PKCE (S256).
// Servers without an authorization server (the embedded demo FHIR server) are opened by
// fhirclient's open-server mode, with the patient named by `patientId` in the URL.
(async function () {
  "use strict";
  const status = document.getElementById("status");
  const params = new URLSearchParams(window.location.search);
  try {
    const config = await (await fetch("config.json", { cache: "no-store" })).json();
    const iss = params.get("iss");
    const fhirServiceUrl = params.get("fhirServiceUrl");
    if (!iss && !fhirServiceUrl) {
      const form = document.getElementById("standalone");
      const input = document.getElementById("iss");
      input.value = new URL("../fhir", window.location.href).href;
      status.textContent = "Standalone launch: choose the FHIR server.";
      form.hidden = false;
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        window.location.search = "?" + new URLSearchParams({ iss: input.value }).toString();
      });
      return;
    }
    // EHR launch: the EHR supplies the patient; standalone: ask the server for a patient picker.
    const scope = (params.get("launch") ? "launch " : "launch/patient ") + config.scope;
    await FHIR.oauth2.authorize({
      clientId: params.get("clientId") || config.clientId,
      scope: scope,
      redirectUri: "index.html",
      pkceMode: "required",
      completeInTarget: true,
    });
  } catch (err) {
    status.className = "error";
    status.textContent = "Launch failed: " + (err && err.message ? err.message : String(err));
  }
})();
