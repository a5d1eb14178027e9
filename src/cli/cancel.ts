import { controlCommand } from "./control-command.ts";

export default controlCommand("cancel");
