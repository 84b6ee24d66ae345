export default function Home() {
  return (
    <main>
      <h1>Mappa webhooks with Next.js</h1>
      <ul>
        <li>
          <code>POST /webhooks/mappa</code>: Node.js runtime
        </li>
        <li>
          <code>POST /webhooks/mappa-edge</code>: Edge runtime
        </li>
        <li>
          <code>POST /api/webhooks/mappa-pages</code>: Pages Router API route
        </li>
      </ul>
    </main>
  );
}
