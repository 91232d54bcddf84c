// The Worker's entry point (wrangler.toml `main`): the Worker crate that
// worker-build compiles to worker/build/index.js, with one guard around it.
//
// A panic in the Rust code is logged by console_error_panic_hook and traps
// the wasm instance; worker-build's shim starts a fresh instance for the next
// request. The trap happens inside the request's future, so that request's
// promise would never settle. This guard answers it (and any other request
// of the isolate that the trap cut off) with an OpenAI-shaped JSON 500
// carrying the explanation headers, instead of a hung request.
import Router, { BudgetLedger, RateLimiter } from "./build/index.js";

export { BudgetLedger, RateLimiter };

/** Rejecters of the requests in flight, called when the instance traps. */
const inFlight = new Set();

addEventListener("error", (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) {
    for (const fail of inFlight) fail(event.error);
    inFlight.clear();
  }
});

function internalError(request) {
  const body = {
    error: { type: "internal_error", message: "internal error: the router failed on this request" },
  };
  return new Response(JSON.stringify(body), {
    status: 500,
    headers: {
      "content-type": "application/json",
      "x-edge-node": "-",
      "x-edge-rule": "-",
      "x-edge-attempts": "0",
      "x-edge-country": request.cf?.country ?? "XX",
      "x-edge-cache": "BYPASS",
    },
  });
}

export default class EdgeRouter extends Router {
  async fetch(request) {
    let fail;
    const trapped = new Promise((_, reject) => {
      fail = reject;
    });
    inFlight.add(fail);
    try {
      return await Promise.race([super.fetch(request), trapped]);
    } catch (error) {
      console.error("edge-router: the router failed on this request:", error);
      return internalError(request);
    } finally {
      inFlight.delete(fail);
    }
  }
}
