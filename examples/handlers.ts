// A table handler in TypeScript: typed by the row, runs after the config's transforms for the table.
import { defineHandler, defineHandlers } from '../src/index.ts';

interface Customer {
  id: number;
  email: string;
  name: string;
}

export default defineHandlers({
  handlers: [
    defineHandler<Customer>({
      table: 'public.customers',
      transforms: [
        // Lower-case e-mails before they reach the sinks; drop test accounts entirely.
        function normaliseEmail(event) {
          const after = event.after;
          if (!after) return event;
          if (after.email.endsWith('@example.invalid')) return null;
          return { ...event, after: { ...after, email: after.email.toLowerCase() } };
        },
      ],
    }),
  ],
});
