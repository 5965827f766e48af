// The first source document's polling client, as it stands, run in Node
// with its global fetch against lrod's HTTP door: submit, then follow the
// Location header (Retry-After between polls) to the 303 and the result.
//
//   node wait_for_job.js http://127.0.0.1:8080
//
// Prints the result as one JSON line; exits 1 with the error otherwise.
'use strict';

async function waitForJob(url, { timeoutMs = 120000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await fetch(url, { redirect: "manual" });
    if (res.status === 303) {
      const resultUrl = res.headers.get("location");
      return fetch(resultUrl).then((r) => r.json());
    }
    if (res.status >= 400) throw new Error(`Job failed: ${res.status}`);
    const wait = Number(res.headers.get("retry-after") || 3) * 1000;
    await new Promise((r) => setTimeout(r, wait));
  }
  throw new Error("Timed out waiting for job");
}

async function main() {
  const base = process.argv[2];
  const submitted = await fetch(`${base}/v1/operations:submit`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      jobType: "examples.sleep",
      input: { "@type": "type.googleapis.com/lrod.examples.v1.SleepJob", duration: "1s", steps: 2 },
    }),
  });
  if (submitted.status !== 202) throw new Error(`Submit answered ${submitted.status}`);
  const location = submitted.headers.get("location");
  const result = await waitForJob(location, { timeoutMs: 30000 });
  console.log(JSON.stringify({ location, result }));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
