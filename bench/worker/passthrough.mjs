// The peer of the Workers benchmark: a plain pass-through Worker that sends
// every request to ORIGIN unchanged and returns the answer. Whatever the
// router Worker costs beyond it is routing.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN + url.pathname + url.search, request);
  },
};
