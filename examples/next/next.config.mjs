/** @type {import("next").NextConfig} */
const nextConfig = {
  reactStrictMode: true,
  // The package tests build into their own folder, so they never race a `pnpm build` here.
  distDir: process.env.NEXT_DIST_DIR || ".next",
};

export default nextConfig;
