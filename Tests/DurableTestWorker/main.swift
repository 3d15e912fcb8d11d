// A worker application the crash and determinism tests spawn (and SIGKILL) as a real process.
// It embeds Durable's command tree with the workflows of DurableTestSupport.
import DurableCommands
import DurableTestSupport

await DurableApp.main(name: "durable-test-worker", register: registerTestWorkflows)
