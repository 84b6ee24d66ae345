// An ordinary JSON route beside the webhooks: answers { echo: <parsed body> }.
export async function POST(request: Request): Promise<Response> {
  return Response.json({ echo: await request.json() });
}
