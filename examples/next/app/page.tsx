export default function Home() {
  return (
    <main>
      <h1>Mappa webhooks with Next.js</h1>
      <ul>
        <li>
          <code>POST /webhooks/mappa</code>: App Router, Node.js runtime (use this one)
        </li>
        <li>
          <code>POST /api/webhooks/mappa-pages</code>: Pages Router API route
        </li>
        <li>
          <code>POST /webhooks/mappa-edge</code>: App Router, Edge runtime (deprecated by Next 16,
          still supported)
        </li>
      </ul>
    </main>
  );
}
