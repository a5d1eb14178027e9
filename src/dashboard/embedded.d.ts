/** Files the dashboard embeds as text (`with { type: "text" }`): Bun, its binaries and Deno read them as strings. */
declare module "*.css" {
  const text: string;
  export default text;
}
declare module "*/page/app.js" {
  const text: string;
  export default text;
}
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const text: string;
  export default text;
}
