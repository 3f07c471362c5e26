// A table handler in TypeScript: typed by the row, runs after the config's transforms for the table.
import { defineHandler, defineHandlers } from '../src/index.ts';

interface Customer {
  id: number;
  email: string;
  full_name: string;
  vip: boolean;
}

export default defineHandlers({
  handlers: [
    defineHandler<Customer>({
      table: 'public.customers',
      transforms: [
        // E-mail addresses are compared case-insensitively downstream; test accounts never leave.
        function normaliseEmail(event) {
          const after = event.after;
          if (!after || typeof after.email !== 'string') return event;
          if (after.email.endsWith('@example.invalid')) return null;
          return { ...event, after: { ...after, email: after.email.toLowerCase() } };
        },
      ],
    }),
  ],
});
