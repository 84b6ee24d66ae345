// Serves Next handlers over real HTTP on 127.0.0.1:0, the way `next start` calls them: route
// handlers get a Fetch `Request` whose body is the Node request stream (as Next's Node runtime
// builds it), API routes get the Node request and response.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export type RouteHandler = (request: Request) => Promise<Response>;
export type ApiRoute = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export interface Served {
  origin: string;
  /** What routes threw (Next logs these and answers an empty 500). */
  errors: unknown[];
  close(): Promise<void>;
}

function toHeaders(incoming: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  return headers;
}

/** The Fetch `Request` Next's Node runtime hands a route handler. */
export function toRequest(req: IncomingMessage, origin: string): Request {
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  return new Request(new URL(req.url ?? "/", origin), {
    method,
    headers: toHeaders(req.headers),
    ...(hasBody ? { body: req as unknown as ReadableStream, duplex: "half" } : {}),
  } as RequestInit);
}

async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  res.statusCode = response.status;
  for (const [name, value] of response.headers) res.setHeader(name, value);
  res.end(Buffer.from(await response.arrayBuffer()));
}

/** Serves route handlers (every method reaches the handler) and API routes by path. */
export async function serve(
  routes: Record<string, RouteHandler | { api: ApiRoute }>,
): Promise<Served> {
  let origin = "";
  const errors: unknown[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const route = routes[path];
    const run = async () => {
      if (route === undefined) {
        res.statusCode = 404;
        res.end();
      } else if (typeof route === "function") {
        await writeResponse(res, await route(toRequest(req, origin)));
      } else {
        await route.api(req, res);
      }
    };
    run().catch((error: unknown) => {
      // What Next does with a route that throws: log it and answer 500.
      errors.push(error);
      console.error(error);
      if (!res.headersSent) res.statusCode = 500;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    errors,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The JSON route beside the webhook: `{ echo: <parsed body> }`, as the example's app/api/echo. */
export async function echo(request: Request): Promise<Response> {
  return Response.json({ echo: await request.json() });
}
