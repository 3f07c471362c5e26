import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { avroSchemaOf, type ConnectInput } from '../../src/testing/avro-envelope.ts';

/** scripts/registry.sh: Apicurio Registry's Confluent-compatible API. */
export const REGISTRY_URL = process.env['TEST_REGISTRY_URL'] ?? `http://127.0.0.1:${process.env['REGISTRY_PORT'] ?? '8081'}/apis/ccompat/v7`;

/** The real registry, with every subject a test registers remembered so that it can be deleted after. */
export interface TestRegistry {
  /** The Avro form of a Connect schema under `subject`: its schema id. */
  register(subject: string, schema: ConnectInput): Promise<number>;
  /** Deletes the registered subjects, soft then permanently (Apicurio wants both); a failure is ignored. */
  deleteSubjects(): Promise<void>;
}

export function testRegistry(): TestRegistry {
  const registry = new SchemaRegistry({ host: REGISTRY_URL });
  const subjects: string[] = [];
  return {
    async register(subject, schema) {
      subjects.push(subject);
      const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(avroSchemaOf(schema)) }, { subject });
      return id;
    },
    async deleteSubjects() {
      for (const subject of subjects) {
        await fetch(`${REGISTRY_URL}/subjects/${encodeURIComponent(subject)}`, { method: 'DELETE' }).catch(() => undefined);
        await fetch(`${REGISTRY_URL}/subjects/${encodeURIComponent(subject)}?permanent=true`, { method: 'DELETE' }).catch(() => undefined);
      }
    },
  };
}
